# 032_standby.pl: fleetlm on a hot standby and at promotion.
#
# With fleetlm.replication = on: reads on the standby see messages from
# the replicated log before the primary's applier moved them into the
# table; wait_for_messages on the standby is woken by an append on the
# primary; every write fails at once with 25006; promotion runs fleetlm
# recovery and appends continue after the highest seq.  With replication
# off: the standby reads the table, writes fail the same way, and the
# promoted standby warns that unapplied messages may be missing.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FleetlmTest;

# the writes, each called with valid arguments (no agent is registered:
# its turns would append answers)
my @writes = (
	[ 'append', "SELECT fleetlm.append('sb-1', 'u-1', 'text', '{\"m\": \"no\"}')" ],
	[ 'append_batch', "SELECT fleetlm.append_batch('sb-1', 'u-1', '[{\"kind\": \"text\", \"content\": {}}]')" ],
	[ 'create_session', "SELECT fleetlm.create_session('u-9', 'a-9')" ],
	[ 'delete_session', "SELECT fleetlm.delete_session('sb-2')" ],
	[ 'mark_read', "SELECT fleetlm.mark_read('sb-1', 'u-1', 1)" ],
	[ 'flush', "SELECT fleetlm.flush()" ],
	[ 'register_agent', "SELECT fleetlm.register_agent('a-9', 'http://127.0.0.1:1')" ],
	[ 'set_agent_status', "SELECT fleetlm.set_agent_status('a-1', 'paused')" ]);

# Every write on $standby fails with 25006 well before startup_timeout
# (set to 20 s below): nothing waits for fleetlm to become ready.
sub check_writes_refused
{
	my ($standby, $label) = @_;
	for my $w (@writes)
	{
		my ($name, $sql) = @$w;
		my ($out, $err) = ('', '');
		my $t0 = time;
		my $ret = $standby->psql('postgres', $sql,
			stdout => \$out, stderr => \$err,
			extra_params => [ '-v', 'VERBOSITY=verbose' ]);
		my $took = time - $t0;
		isnt($ret, 0, "$label: $name fails on the standby");
		like($err, qr/25006: cannot execute fleetlm\.$name\(\) on a standby/,
			"$label: $name fails with 25006 and says why");
		like($err, qr/HINT:.*primary/, "$label: $name has a hint");
		cmp_ok($took, '<', 10, "$label: $name fails at once, not after fleetlm.startup_timeout");
	}
	return;
}

sub append_on
{
	my ($node, $session, $marker) = @_;
	return fleet_query($node,
		"SELECT fleetlm.append('$session', 'u-1', 'text', '{\"m\": \"$marker\"}')");
}

# markers of $session's messages on $node, in seq order, "seq:marker"
sub markers_on
{
	my ($node, $session) = @_;
	return fleet_query($node,
		"SELECT string_agg(seq || ':' || (content->>'m'), ',' ORDER BY seq)"
		  . " FROM fleetlm.messages('$session', 0, 1000)");
}

# A primary with fleetlm.replication = $replication (the applier moves
# nothing for 60 s unless flushed), sessions sb-1 and sb-2, one applied
# message "$marker" in sb-1, and a hot standby of it.
sub primary_and_standby
{
	my ($name, $replication, $marker) = @_;
	my $p = fleetlm_primary("${name}_primary",
		conf => {
			'fleetlm.replication' => $replication,
			'fleetlm.flush_interval' => '60s',
			'fleetlm.agent_url_allowlist' => "'http://127.0.0.1:1/'" });
	fleet_query($p, q{
		SELECT fleetlm.create_session('u-1', 'a-1', session_id => 'sb-1');
		SELECT fleetlm.create_session('u-1', 'a-1', session_id => 'sb-2');
	});
	append_on($p, 'sb-1', $marker);
	fleet_query($p, 'SELECT fleetlm.flush()');
	my $s = fleetlm_standby($p, "${name}_standby",
		conf => { 'fleetlm.startup_timeout' => '20s' });
	return ($p, $s);
}

######################################################################
# replication on
######################################################################

my ($primary, $standby) = primary_and_standby('sb', 'on', 'p1');

# the standby's first replicated chunk, then an applied position past it
append_on($primary, 'sb-2', 'p2');
fleet_query($primary, 'SELECT fleetlm.flush()');
$primary->wait_for_catchup($standby, 'replay');

# appends the applier does not move for 60 s
my @seqs = map { append_on($primary, 'sb-1', "r$_") } 1 .. 5;
is("@seqs", '2 3 4 5 6', 'primary: appends got seqs 2..6');
$primary->wait_for_catchup($standby, 'replay');
is(fleet_query($primary, "SELECT count(*) FROM fleetlm.messages WHERE session_id = 'sb-1'"),
	1, 'primary: the applier has not moved the new messages yet');
is(fleet_query($standby, "SELECT count(*) FROM fleetlm.messages WHERE session_id = 'sb-1'"),
	1, 'standby: its table lacks them too');
is(markers_on($standby, 'sb-1'), '1:p1,2:r1,3:r2,4:r3,5:r4,6:r5',
	'standby: messages() serves them from the replicated log');
is(fleet_query($standby, "SELECT fleetlm.last_seq('sb-1')"), 6, 'standby: last_seq sees them');
is(fleet_query($standby, "SELECT last_seq FROM fleetlm.get_session('sb-1')"), 6,
	'standby: get_session sees them');
is(fleet_query($standby, "SELECT string_agg(session_id, ',' ORDER BY session_id) FROM fleetlm.list_sessions('u-1')"),
	'sb-1,sb-2', 'standby: list_sessions');
is(fleet_query($standby, "SELECT last_seq FROM fleetlm.inbox('u-1') WHERE session_id = 'sb-1'"),
	6, 'standby: inbox sees the replicated messages');
is(fleet_query($standby, "SELECT state FROM fleetlm.stat"), 'standby',
	'standby: stats() works and says standby');

# a long-poll on the standby is woken by an append on the primary
my ($pout, $perr) = ('', '');
my $poller = IPC::Run::start(
	[ 'psql', '-X', '-At', '-d', $standby->connstr('postgres'), '-c',
	  "SELECT seq || ':' || (content->>'m') FROM fleetlm.wait_for_messages('sb-1', 6, '20s')" ],
	'>', \$pout, '2>', \$perr);
# until the poller waits (or has ended: then the check below fails)
for (my $i = 0; $i < 300 && $poller->pumpable; $i++)
{
	last if fleet_query($standby,
		"SELECT count(*) > 0 FROM pg_stat_activity WHERE wait_event IS NOT NULL"
		  . " AND query LIKE '%wait_for_messages(''sb-1''%' AND pid <> pg_backend_pid()") eq 't';
	usleep(100_000);
}
my $t0 = time;
append_on($primary, 'sb-1', 'woke');
$poller->finish;
my $waited = time - $t0;
is($pout, "7:woke\n", 'standby: wait_for_messages returns the message appended on the primary');
is($perr, '', 'standby: the poller printed no error');
cmp_ok($waited, '<', 15, 'standby: the poller was woken, not timed out');

check_writes_refused($standby, 'replication on');

# promotion: recovery runs, appends continue after the highest seq
$standby->promote;
my %sent;
my ($ok, $errors) = wait_writable($standby, 'sb-1', 'promo', \%sent, 60);
ok(defined $ok, 'promoted standby accepts appends') or diag(join("\n", @$errors));
is($ok->[0], 8, 'the first append after promotion continues at seq 8');
is(markers_on($standby, 'sb-1'), '1:p1,2:r1,3:r2,4:r3,5:r4,6:r5,7:woke,8:promo-w1',
	'promoted standby: every message once, in order');
ok($standby->log_contains(qr/fleetlm: this server ran archive recovery; recovering the fleetlm log it replayed/),
	'promoted standby: recovery says it recovers the replicated log');
is(append_on($standby, 'sb-2', 'x'), 2, 'promoted standby: sb-2 continues at 2');
$standby->stop;
$primary->stop;

######################################################################
# a pipeline's held-back results wait for the synchronous standby in the
# communication layer; a reload that configures the standby away releases
# them, as it releases commits
######################################################################

SKIP:
{
	my $client = build_pipeline_client();
	skip 'test/pipeline_client.c did not build', 4 unless $client;
	my ($p3, $s3) = primary_and_standby('sb_sync', 'on', 'q1');
	set_sync_standby($p3, 'sb_sync_standby');
	wait_standby($p3, 'sb_sync_standby', 'sync');
	$s3->stop;
	# both appends defer (a statement follows each); in an open transaction
	# block the Sync's ReadyForQuery is what waits, in the communication layer
	my $dir = PostgreSQL::Test::Utils::tempdir();
	open(my $fh, '>', "$dir/held.sql") or die;
	print $fh "BEGIN\n";
	print $fh "SELECT fleetlm.append('sb-2', 'u-1', 'text', '{\"m\": \"h$_\"}')\n" for 1 .. 2;
	print $fh "SELECT 7\n";
	close $fh;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start([ $client, $p3->connstr('postgres'), "$dir/held.sql", 4, 'report' ],
		'>', \$out, '2>', \$err, IPC::Run::timeout(60));
	$p3->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event_type = 'Extension'"
		  . " AND query = 'SELECT 7'")
	  or die 'the pipeline did not wait';
	usleep(500_000);
	unlike($out, qr/ROW/, 'held-back results wait for the stopped synchronous standby');
	set_sync_standby($p3, '');
	$h->finish;
	like($out, qr/CMD BEGIN\nROW 1\nROW 2\nROW 7\nSYNC\n/,
		'with the standby configured away, the results arrive');
	is($err, '', 'the pipeline client printed no error');
	is(markers_on($p3, 'sb-2'), '1:h1,2:h2', 'both appends are there');
	$p3->stop;
}

######################################################################
# replication off
######################################################################

my ($p2, $s2) = primary_and_standby('sb_off', 'off', 'a1');
append_on($p2, 'sb-1', 'a2');
$p2->wait_for_catchup($s2, 'replay');
is(markers_on($s2, 'sb-1'), '1:a1',
	'replication off: the standby reads the table (the unapplied message is not there)');
check_writes_refused($s2, 'replication off');
fleet_query($p2, 'SELECT fleetlm.flush()');
$p2->wait_for_catchup($s2, 'replay');
is(markers_on($s2, 'sb-1'), '1:a1,2:a2', 'replication off: applied messages reach the standby');
$p2->stop;
$s2->promote;
($ok, $errors) = wait_writable($s2, 'sb-1', 'off', \%sent, 60);
ok(defined $ok, 'replication off: the promoted standby accepts appends')
  or diag(join("\n", @$errors));
is($ok->[0], 3, 'replication off: appends continue after the table');
ok($s2->log_contains(qr/WARNING:.*promoted or restored from a backup with fleetlm\.replication = off/),
	'replication off: promotion warns that seqs may be handed out again');
$s2->stop;

done_testing();

# 031_proxy_move.pl: moving partitions of fleetlm_proxy's cluster to a
# third fleetlm server while clients append through the coordinator to
# sessions of every partition.  Partition P goes step by step (fence and
# drain, copy, switch, cancel the old long-polls, remove the old copies,
# unfence), partition Q with move_partition.  Checked: the drain waits
# for a transaction older than the fence and fails with 55006 naming it;
# calls of the fenced partition fail at once with 55P03 while the other
# partitions' appends go on; the listings show a session once while it has
# two copies; every acknowledged append present exactly once, at its seq,
# seqs gapless (on the servers that hold the sessions after the moves); a
# retried keyed append returns its original seq; inbox and read cursors
# unchanged by the move; a deleted session does not come back; a
# long-poll that waited on the old server is cancelled; the steps refuse
# to run unfenced; the clients' stderr holds only the fence's errors.
# A third partition moves with two coordinators, the steps split between
# them.  Then partitions P and Q go through a pgbouncer in transaction pooling:
# 8 clients and a long-poll through the coordinator on 3 server
# connections, and SET LOCAL in a pooled transaction.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use IPC::Run;
use FleetlmTest;
use FleetlmProxy;

my @shard = map { fleetlm_node("shard$_") } 0 .. 2;
my $nparts = 8;
my @home = map { $_ % 2 } 0 .. $nparts - 1;    # partition => shard; shard 2 empty
my $coord = proxy_node('coord', [ map { $shard[$_] } @home ]);
my @connstr = map { node_connstr($_) } @shard;

sub sql { my ($node, $q) = @_; return $node->safe_psql('postgres', $q); }

# --- sessions, keyed messages, cursors, a deleted session -------------------
my $n = 64;
my $all = create_sessions($coord, 'mv', $n);
my %part = map { split /\|/ } split /\n/,
  sql($coord, "SELECT s, fleetlm.session_partition(s) FROM unnest(ARRAY['"
	  . join("','", @$all) . "']) s");
my %in;
push @{ $in{ $part{$_} } }, $_ for @$all;
# P: the odd partition (shard 1) with the most sessions; Q: the even one
my ($P) = sort { @{ $in{$b} // [] } <=> @{ $in{$a} // [] } || $a <=> $b } grep { $_ % 2 } 0 .. $nparts - 1;
my ($Q) = sort { @{ $in{$b} // [] } <=> @{ $in{$a} // [] } || $a <=> $b } grep { !($_ % 2) } 0 .. $nparts - 1;
cmp_ok(scalar(@{ $in{$P} }), '>=', 4, "partition $P has " . scalar(@{ $in{$P} }) . ' sessions');
cmp_ok(scalar(@{ $in{$Q} }), '>=', 4, "partition $Q has " . scalar(@{ $in{$Q} }) . ' sessions');

my (@acked, %sent, %key_seq);
for my $k (1, 2)
{
	my $out = sql($coord,
		"SELECT fleetlm.append(s, CASE WHEN $k = 1 THEN 'u-' ELSE 'a-' END || i, 'text',"
		  . " jsonb_build_object('m', 'pre-' || i || '-$k'), '{\"k\": $k}', 'key-' || i || '-$k')"
		  . " || ' pre-' || i || '-$k ' || s"
		  . " FROM generate_series(1, $n) i, LATERAL (SELECT 'mv-' || i AS s) x");
	for (split /\n/, $out)
	{
		my ($seq, $m, $s) = split / /;
		push @acked, [ $seq, $m, $s ];
		$sent{$m} = $s;
		$key_seq{"$s key-" . substr($m, 4)} = $seq;
	}
}
sql($coord, "SELECT fleetlm.mark_read('mv-' || i, 'u-' || i, 1) FROM generate_series(1, $n) i;"
	  . " SELECT fleetlm.mark_read('mv-' || i, 'a-' || i, 2) FROM generate_series(1, $n, 2) i");
my ($goneP, $goneQ) = ($in{$P}[0], $in{$Q}[0]);
is(sql($coord, "SELECT fleetlm.delete_session('$goneP') AND fleetlm.delete_session('$goneQ')"), 't',
	"sessions $goneP (partition $P) and $goneQ (partition $Q) deleted");
my %gone = ($goneP => 1, $goneQ => 1);
my @live = grep { !$gone{$_} } @$all;
my @P = grep { !$gone{$_} } @{ $in{$P} };
my @Q = grep { !$gone{$_} } @{ $in{$Q} };
my $plist = "ARRAY['" . join("','", @P) . "']";

# --- the load: 4 clients appending to every live session -------------------
my $load = start_load($coord, clients => 4, per_client => 4000, sessions => \@live,
	verbose => 1, on_error_stop => 0, tag => 'L', pad => 20);
wait_acked($load, 300);

# how many appends to sessions outside partitions @parts the clients have
# had acknowledged so far
sub acked_outside
{
	my (@parts) = @_;
	my %skip = map { $_ => 1 } @parts;
	my $count = 0;
	for my $c (1 .. $load->{clients})
	{
		open my $fh, '<', "$load->{dir}/client$c.out" or next;
		while (<$fh>)
		{
			$count++ if /^\d+ \S+ (\S+)\n/ && !$skip{ $part{$1} };
		}
		close $fh;
	}
	return $count;
}

# a long-poll on partition P, waiting on shard 1 (from before the fence)
my $waiter = start_waiter($coord, $shard[1],
	"SELECT * FROM fleetlm.wait_for_messages('$P[1]', 1000000, '60s');");

# a transaction that began before the fence: the drain waits for it
my $idle = $coord->background_psql('postgres');
$idle->query_safe('BEGIN');
my $idle_pid = $idle->query_safe('SELECT pg_backend_pid()');
chomp $idle_pid;

# --- partition P, step by step ----------------------------------------------
my ($rc, $out, $err) = $coord->psql('postgres', "CALL fleetlm.fence_partition($P, '1s')",
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:  55006: fleetlm partition $P is fenced but not drained after 00:00:01/,
	'the drain times out (55006) while a transaction older than the fence is open');
like($err, qr/DETAIL:  Backends \{$idle_pid\} are in transactions that began before the fence/,
	'the error names that backend, and only it (not the long-poll)')
  or diag(sql($coord, 'SELECT pid, state, xact_start, query FROM pg_stat_activity'));
like(result($coord, "SELECT fleetlm.append('$P[1]', 'u', 'text', '{}')"),
	qr/^ERROR 55P03: fleetlm partition $P is fenced: session "\Q$P[1]\E" is being moved to another server$/,
	'the fence stays: a call of the partition fails with 55P03, naming it');
$idle->quit;
is(result($coord, "CALL fleetlm.fence_partition($P)"), '', 'fenced and drained once that transaction ended');

for my $call ("SELECT fleetlm.append('$P[2]', 'u', 'text', '{}')",
	"SELECT fleetlm.messages('$P[2]')", "SELECT fleetlm.mark_read('$P[2]', 'u', 1)",
	"SELECT fleetlm.wait_for_messages('$P[2]', 0, '1s')",
	"SELECT fleetlm.append_many(ARRAY['$Q[1]', '$P[2]'], '{u,u}', '{text,text}', '{\"{}\",\"{}\"}')")
{
	like(result($coord, $call), qr/^ERROR 55P03: fleetlm partition $P is fenced/, "fenced: $call");
}
my ($other) = grep { $part{$_} != $P } @live;
my $seq = sql($coord, "SELECT fleetlm.append('$other', 'u', 'text', '{\"m\": \"during-fence\"}')");
like($seq, qr/^\d+$/, "an append to $other (partition $part{$other}) succeeds meanwhile");
push @acked, [ $seq, 'during-fence', $other ];
$sent{'during-fence'} = $other;

# what the move must keep, read while nothing can change it
my $inbox_q = "SELECT u, i.* FROM unnest(ARRAY['" . join("','", map { my $u = $_; $u =~ s/^mv-/u-/; $u } @P)
  . "']) u, fleetlm.inbox(u) i ORDER BY 1, 2";
my $cursors_q = "SELECT session_id, participant_id, last_read_seq, updated_at FROM fleetlm.cursors"
  . " WHERE session_id = ANY ($plist) ORDER BY 1, 2";
my $inbox_before = sql($coord, $inbox_q);
my $cursors_before = sql($shard[1], $cursors_q);
my $last_before = sql($shard[1], "SELECT string_agg(s || ':' || fleetlm.last_seq(s), ' ' ORDER BY s) FROM unnest($plist) s");
like($inbox_before, qr/\|/, 'the inbox of the partition\'s users, read through the coordinator while fenced');

my $t0 = acked_outside($P);
usleep(1_000_000);
my $t1 = acked_outside($P);
cmp_ok($t1, '>', $t0, "the clients' appends to the other partitions go on while $P is fenced (+"
	  . ($t1 - $t0) . ' in 1 s)');

like(result($coord, "SELECT fleetlm.copy_partition($P, '$connstr[1]')"),
	qr/^ERROR 22023: target must be another server/, 'copy_partition to the server it is on: 22023');
is(sql($coord, "SELECT fleetlm.copy_partition($P, '$connstr[2]')"), scalar(@P),
	'copy_partition copied every live session of the partition');
is(sql($coord, "SELECT fleetlm.copy_partition($P, '$connstr[2]')"), scalar(@P),
	'copy_partition again skips the identical copies');
is(sql($shard[2], "SELECT count(*) FROM fleetlm.sessions"), scalar(@P), 'they are on shard 2');
is(sql($coord, "SELECT count(*) FROM fleetlm.list_sessions('u-" . substr($P[1], 3) . "')") . ' '
	  . sql($coord, "SELECT count(*) FROM fleetlm.inbox('u-" . substr($P[1], 3) . "')"), '1 1',
	'list_sessions and inbox show a session with two copies once');
is(sql($coord, "SELECT fleetlm.switch_partition($P, '$connstr[2]')"), $connstr[1],
	'switch_partition returns the old server');
is(sql($coord, "SELECT fleetlm.cancel_fenced_waits($P)"), '1', 'the old long-poll is cancelled');
my ($still) = $waiter->query("SELECT 'still here'");
like($waiter->{stderr}, qr/canceling statement due to user request/, 'the long-poll got 57014');
$waiter->quit;
like(result($coord, "SELECT fleetlm.remove_partition_copy($P, '$connstr[2]')"),
	qr/^ERROR 22023: server .* holds partition $P/, 'remove_partition_copy of the live copy: 22023');
is(sql($coord, "SELECT fleetlm.remove_partition_copy($P, '$connstr[1]')"), scalar(@P),
	'remove_partition_copy deleted the old copies');
is(sql($coord, $inbox_q), $inbox_before, 'the inbox of the partition\'s users is unchanged (unread counts, cursors, last messages)');
is(sql($shard[2], $cursors_q), $cursors_before, 'the read cursors on shard 2 equal those of shard 1 (updated_at too)');
is(sql($shard[2], "SELECT string_agg(s || ':' || fleetlm.last_seq(s), ' ' ORDER BY s) FROM unnest($plist) s"),
	$last_before, 'each session\'s last_seq is kept');
is(sql($coord, "SELECT fleetlm.unfence_partition($P)"), 't', 'unfenced');

# --- partition Q with move_partition, under the same load -------------------
my $before_q = acked_outside();
is(result($coord, "CALL fleetlm.move_partition($Q, '$connstr[2]')"), '', "move_partition($Q) to shard 2");
cmp_ok(acked_outside(), '<', 4 * 4000, 'the load was still running');
is(sql($coord, 'SELECT count(*) FROM fleetlm.fences'), '0', 'no fence left');
is(result($coord, "CALL fleetlm.move_partition($Q, '$connstr[2]')"), '',
	'moving a partition to the server it is on changes nothing');
$home[$P] = $home[$Q] = 2;
# servers numbered in the order of their lowest partition
my @groups = grep { @$_ } map { my $k = $_; [ grep { $home[$_] == $k } 0 .. $nparts - 1 ] } 0 .. 2;
@groups = sort { $a->[0] <=> $b->[0] } @groups;
is(sql($coord, "SELECT string_agg(shard || ':' || partitions::text, ' ') FROM fleetlm._shards()"),
	join(' ', map { "$_:{" . join(',', @{ $groups[$_] }) . '}' } 0 .. $#groups),
	'the cluster as configured now');

# --- refusals ----------------------------------------------------------------
like(result($coord, "SELECT fleetlm.copy_partition($P, '$connstr[1]')"),
	qr/^ERROR 55000: fleetlm partition $P is not fenced/, 'copy_partition unfenced: 55000');
like(result($coord, "SELECT fleetlm.switch_partition($P, '$connstr[1]')"),
	qr/^ERROR 55000: fleetlm partition $P is not fenced/, 'switch_partition unfenced: 55000');
like(result($coord, "SELECT fleetlm.remove_partition_copy($P, '$connstr[1]')"),
	qr/^ERROR 55000: fleetlm partition $P is not fenced/, 'remove_partition_copy unfenced: 55000');
like(result($coord, "CALL fleetlm.fence_partition($nparts)"),
	qr/^ERROR 22023: partition must be between 0 and 7: $nparts$/, 'fence_partition of no partition: 22023');
like(result($coord, "SELECT fleetlm.unfence_partition($P)"), qr/^f$/, 'unfence_partition of an unfenced partition: false');
like(result($coord, 'SELECT fleetlm.fence_partition(1)'), qr/^ERROR 42809: /, 'fence_partition is a procedure');

# --- after the moves ---------------------------------------------------------
my ($acked_load, $sent_load) = finish_load($load);
push @acked, @$acked_load;
%sent = (%sent, %$sent_load);
my $errs = check_client_errors($load, 'clients', may_end_early => 0,
	allowed => [ qr/^ERROR:  55P03: fleetlm partition ($P|$Q) is fenced: session "mv-\d+" is being moved to another server$/,
		qr/^SQL statement "select \* from fleetlm\._route\(\$1\)"$/ ]);
my @refused = grep { /55P03/ } keys %{ $errs->{count} };
cmp_ok(scalar(grep { $part{ $load->{sent}{$_} } != $P && $part{ $load->{sent}{$_} } != $Q }
		  keys %{ $load->{failed} }), '==', 0, 'only appends to the fenced partitions failed');
cmp_ok(scalar(keys %{ $load->{failed} }), '>', 0,
	scalar(keys %{ $load->{failed} }) . ' appends to a fenced partition failed with 55P03');

# keyed retries through the coordinator return the original seqs
my @retry = map { my $s = $_; map { [ $s, $_ ] } (1, 2) } (@P, @Q);
my $retry_q = join(' UNION ALL ', map {
	my ($s, $k) = @$_;
	my $i = substr($s, 3);
	"SELECT '$s key-$i-$k', fleetlm.append('$s', 'u-$i', 'text', '{\"m\": \"retry\"}', '{}', 'key-$i-$k')"
} @retry);
my %got = map { split /\|/ } split /\n/, sql($coord, $retry_q);
is(scalar(grep { $got{$_} != $key_seq{$_} } keys %got), 0,
	'a retried keyed append returns its original seq in every moved session (' . scalar(keys %got) . ')')
  or diag(join("\n", map { "$_: $got{$_} (was $key_seq{$_})" } grep { $got{$_} != $key_seq{$_} } sort keys %got));

# the deleted sessions do not come back
for my $s ($goneP, $goneQ)
{
	like(result($coord, "SELECT fleetlm.get_session('$s')"), qr/^ERROR P0002: /, "$s is still deleted");
	is(join(' ', map { sql($_, "SELECT count(*) FROM fleetlm.messages WHERE session_id = '$s'") } @shard),
		'0 0 0', "no message of $s on any shard");
}

# a long-poll through the coordinator, woken by an append on the new server
{
	my $last = sql($coord, "SELECT fleetlm.last_seq('$P[1]')");
	my $w = start_waiter($coord, $shard[2],
		"SELECT 'woke ' || string_agg(seq::text, ',') FROM fleetlm.wait_for_messages('$P[1]', $last, '30s');");
	my $seq = sql($coord, "SELECT fleetlm.append('$P[1]', 'u', 'text', '{\"m\": \"wake-1\"}')");
	push @acked, [ $seq, 'wake-1', $P[1] ];
	$sent{'wake-1'} = $P[1];
	my $got = $w->query_until(qr/woke .*\n/, '');
	$w->quit;
	like($got, qr/woke ${\($last + 1)}\n/, 'a long-poll of a moved session is woken by an append on its new server');
}

# --- two coordinators -------------------------------------------------------
# Partition R moves to shard 0 with the steps split as README.md says for
# several coordinators: fence, switch, cancel and unfence on both, copy
# and remove on one.  Each coordinator refuses R's calls while its own
# fence is up, and routes them to the new server after its own switch.
{
	my ($R) = sort { @{ $in{$b} // [] } <=> @{ $in{$a} // [] } || $a <=> $b }
	  grep { $_ % 2 && $_ != $P } 0 .. $nparts - 1;
	my @R = @{ $in{$R} };
	my $coord2 = proxy_node('coord2', [ map { $shard[ $home[$_] ] } 0 .. $nparts - 1 ]);
	my $rq = "SELECT string_agg(s || ':' || fleetlm.last_seq(s), ' ' ORDER BY s) FROM unnest(ARRAY['"
	  . join("','", @R) . "']) s";
	my $before = sql($coord2, $rq);
	is(result($_, "CALL fleetlm.fence_partition($R)"), '', "partition $R fenced on " . $_->name)
	  for ($coord, $coord2);
	like(result($coord2, "SELECT fleetlm.last_seq('$R[0]')"), qr/^ERROR 55P03: fleetlm partition $R is fenced/,
		'coord2 refuses its calls');
	is(sql($coord, "SELECT fleetlm.copy_partition($R, '$connstr[0]')"), scalar(@R), 'copied on coord');
	is(sql($_, "SELECT fleetlm.switch_partition($R, '$connstr[0]')"), $connstr[1], 'switched on ' . $_->name)
	  for ($coord, $coord2);
	is(sql($_, "SELECT fleetlm.cancel_fenced_waits($R)"), '0', 'no long-poll to cancel on ' . $_->name)
	  for ($coord, $coord2);
	is(sql($coord, "SELECT fleetlm.remove_partition_copy($R, '$connstr[1]')"), scalar(@R), 'old copies removed');
	is(sql($_, "SELECT fleetlm.unfence_partition($R)"), 't', 'unfenced on ' . $_->name) for ($coord, $coord2);
	is(sql($coord2, $rq), $before, "coord2 reads partition ${R}'s sessions, as before, from shard 0");
	my $i = substr($R[0], 3);
	is(sql($coord2, "SELECT fleetlm.append('$R[0]', 'u-$i', 'text', '{}', '{}', 'key-$i-1')"),
		$key_seq{"$R[0] key-$i-1"}, 'a retried keyed append through coord2 returns its original seq');
	$home[$R] = 0;
	$coord2->stop;
}

# --- pgbouncer in front of shard 2 ------------------------------------------
# Partitions P and Q now go through a pgbouncer in transaction pooling with
# 3 server connections: 8 clients append through the coordinator (8
# coordinator backends, each with its own PL/Proxy connection to the
# bouncer) while a long-poll holds one server connection; a SET LOCAL in a
# pooled transaction does not leak to the next one.
{
	my ($bconn, $bouncer) = start_pgbouncer($shard[2], 3);
	sql($coord, "ALTER SERVER fleetlm_cluster OPTIONS (SET p$P '$bconn', SET p$Q '$bconn')");
	my $on2 = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
	  . " AND pid <> pg_backend_pid()";
	my $last = sql($coord, "SELECT fleetlm.last_seq('$Q[1]')");
	my $w = start_waiter($coord, $shard[2],
		"SELECT 'woke ' || string_agg(seq::text, ',') FROM fleetlm.wait_for_messages('$Q[1]', $last, '60s');");
	my @pq = grep { $_ ne $Q[1] } (@P, @Q);
	my $bload = start_load($coord, clients => 8, per_client => 150, sessions => \@pq, tag => 'B',
		verbose => 1);
	my $max = 0;
	for (1 .. 20)
	{
		my $c = sql($shard[2], $on2);
		$max = $c if $c > $max;
		usleep(50_000);
	}
	my ($acked_b, $sent_b) = finish_load($bload);
	check_client_errors($bload, 'clients through pgbouncer', may_end_early => 0);
	is(scalar(@$acked_b), 8 * 150, 'every append through the coordinator and pgbouncer acknowledged');
	push @acked, @$acked_b;
	%sent = (%sent, %$sent_b);
	cmp_ok($max, '<=', 3, "shard 2 had at most 3 client backends (the pool) under 8 clients and a long-poll (at most $max)");
	my $seq = sql($coord, "SELECT fleetlm.append('$Q[1]', 'u', 'text', '{\"m\": \"wake-2\"}')");
	push @acked, [ $seq, 'wake-2', $Q[1] ];
	$sent{'wake-2'} = $Q[1];
	my $got = $w->query_until(qr/woke .*\n/, '');
	$w->quit;
	like($got, qr/woke ${\($last + 1)}\n/, 'a long-poll through the coordinator and pgbouncer is woken');

	my ($rc, $out, $err) = ('', '', '');
	$rc = IPC::Run::run([ 'psql', '-XAtq', '-d', $bconn, '-c',
			"BEGIN; SET LOCAL fleetlm.synchronous_append = off;"
			  . " SELECT fleetlm.append('$Q[2]', 'u', 'text', '{\"m\": \"local-1\"}'); COMMIT;",
			'-c', 'SHOW fleetlm.synchronous_append' ], '>', \$out, '2>', \$err);
	my ($lseq, $show) = split /\n/, $out;
	ok($rc && $err eq '', 'SET LOCAL and an append in one transaction through pgbouncer') or diag($err);
	is($show, 'on', 'the next transaction on the pooled connection has synchronous_append on again');
	push @acked, [ $lseq, 'local-1', $Q[2] ];
	$sent{'local-1'} = $Q[2];
	$bouncer->kill_kill;
}

# every session on the shard of its partition, and only there
for my $k (0 .. 2)
{
	my @mine = grep { $home[ $part{$_} ] == $k } @live;
	sql($shard[$k], 'SELECT fleetlm.flush()');    # the old copies' deletions applied
	is(sql($shard[$k], 'SELECT string_agg(session_id, \' \' ORDER BY session_id) FROM fleetlm.sessions'),
		join(' ', sort @mine), "shard $k holds exactly the live sessions of its partitions");
	my %mine = map { $_ => 1 } @mine;
	verify_acked($shard[$k], [ grep { $mine{ $_->[2] } } @acked ], \%sent, \@mine, "shard $k");
}

$_->stop for ($coord, @shard);
done_testing();

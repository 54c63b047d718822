# 034_backup.pl: base backups and point-in-time recovery of a fleetlm
# server, taken under load.
#
# Every fifth statement of the load is an append_batch of 3: each restored
# server holds each batch whole at consecutive seqs, or not at all.
#
# Replication on (the fleetlm log travels in PostgreSQL's WAL):
# 1. pg_basebackup while 4 clients append, restored (recovery from the
#    backup's WAL, no archive, no streaming): every message acknowledged
#    before the backup ended is there: those acknowledged before it began,
#    and those whose client saw a WAL flush position at or before the
#    backup's end LSN (its manifest) after the append returned; each
#    session holds a gapless prefix of its acknowledged messages, each once
#    at its acknowledged seq; appends continue after the last seq.
# 2. PITR from that backup through the WAL archive to a named restore
#    point created under load: every message acknowledged before the
#    restore point was created (or with its WAL before the point's LSN) is
#    there, none appended after it returned, each session a gapless prefix.
# 3. pg_basebackup of an asynchronous standby under load, restored as a
#    server of its own: every message whose WAL was before the backup's end
#    LSN is there, each session a gapless prefix.
# Replication off:
# 4. flush(), then pg_basebackup under load, restored: every message
#    acknowledged before the flush (so applied by it) is there, nothing is
#    applied twice (no marker twice in messages() or in the table, which
#    equal each other after flush()), seqs gapless; appends work, and the
#    log has the WARNING that acknowledged but unapplied messages are not
#    there and their seqs may be handed out again.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use Time::HiRes qw(time);
use FleetlmTest;

my $t0 = time;

# Start a node restored from $backup of $from; %o: init => {
# init_from_backup's parameters }, conf => extra settings, standalone => 1:
# not a standby (for a backup of a standby).  Waits until it has left recovery
# and takes appends (probe appends to probe-1, into %$sent); the errors of
# the attempts before must be fleetlm's "not ready" (57P03) or a read-only
# transaction while recovery runs (25006).
sub restore
{
	my ($name, $from, $backup, $sent, %o) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init_from_backup($from, $backup, %{ $o{init} // {} });
	if ($o{standalone})
	{
		# a standby's backup, restored as a server of its own
		unlink($node->data_dir . '/standby.signal');
		$node->append_conf('postgresql.conf', "primary_conninfo = ''");
	}
	# the copied archive_command would archive into $from's archive
	$node->append_conf('postgresql.conf', 'archive_mode = off');
	$node->append_conf('postgresql.conf', $o{conf}) if $o{conf};
	$node->start;
	ok($node->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'),
		"$name: recovery ends");
	my $t = time;
	my ($w, $errors) = wait_writable($node, 'probe-1', $name, $sent, 60);
	ok(defined $w, sprintf("$name: appends work %.1f s after recovery ended", time - $t))
	  or die "$name: no append succeeded: @$errors";
	my @other = grep { !/^ERROR:  (57P03|25006): / } @$errors;
	is(scalar(@other), 0, "$name: until then appends failed only with 57P03 or 25006 ("
		  . scalar(@$errors) . " attempts)")
	  or diag("$name: other errors: @other");
	return $node;
}

# No (session, seq) and no marker twice in $node's table (after flush()).
sub check_table_once
{
	my ($node, $label) = @_;
	fleet_query($node, 'SELECT fleetlm.flush()');
	is(fleet_query($node,
			"SELECT (SELECT count(*) FROM (SELECT FROM fleetlm.messages GROUP BY session_id, seq"
			  . " HAVING count(*) > 1) a),"
			  . " (SELECT count(*) FROM (SELECT FROM fleetlm.messages GROUP BY content->>'m'"
			  . " HAVING count(*) > 1) b)"),
		'0|0', "$label: the table holds no (session, seq) and no message twice");
	return;
}

# Start a load that runs through what follows, until end_load stops it;
# returns it.  Each append is followed by PostgreSQL's WAL flush position
# (append_statements' flush_lsn); every fifth is an append_batch of 3.
sub load_on
{
	my ($node, $sessions, $tag) = @_;
	my %batches;
	my $load = start_load($node, clients => 4, tag => $tag,
		statements => sub {
			append_statements($tag, $_[0], 5000, $sessions, flush_lsn => 1,
				batch_every => 5, batches => \%batches);
		});
	$load->{batches} = \%batches;
	$load->{node} = $node;
	$load->{tag} = $tag;
	wait_acked($load, 400);    # two lines an append
	return $load;
}

# Stop a load: terminate its clients' backends (their statements carry
# " <tag>-c"), which must all have been running until then, and had no
# other error.  Returns finish_load's acknowledged appends and the markers
# sent (the batches' included), and the batches.
sub end_load
{
	my ($load, $label) = @_;
	my $clients = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
	  . " WHERE pid <> pg_backend_pid() AND position(' $load->{tag}-c' in query) > 0";
	ok($load->{node}->poll_query_until('postgres', $clients, '0'),
		"$label: its clients' backends are terminated");
	my ($acked, $sent) = finish_load($load);
	my $e = check_client_errors($load, $label,
		allowed => [ crash_errors(), qr/^FATAL:  terminating connection due to administrator command$/ ]);
	is($e->{early}, 4, "$label: every client was still appending when it was stopped");
	batch_markers($load->{batches}, $sent);
	return ($acked, $sent, $load->{batches});
}

######################################################################
# replication on
######################################################################

my $p = fleetlm_primary('on_primary', has_archiving => 1);
my $sessions = create_sessions($p, 'bk', 4);
create_sessions($p, 'probe', 1);
create_sessions($p, 'pit', 1);
my $checked = [ @$sessions, 'probe-1' ];
my $sb = fleetlm_standby($p, 'on_standby');
my $load = load_on($p, $sessions, 'L');

# 1. a base backup under load
my $before_backup = acked_now($load);
$p->backup('b1');
my $after_backup = acked_now($load);
my $manifest = decode_json(slurp_file($p->backup_dir . '/b1/backup_manifest'));
my $backup_end = $manifest->{'WAL-Ranges'}[-1]{'End-LSN'};

# 3. a base backup of the (asynchronous) standby under load
$sb->backup('b3');
my $sb_end = decode_json(slurp_file($sb->backup_dir . '/b3/backup_manifest'))->{'WAL-Ranges'}[-1]{'End-LSN'};

# 2. a restore point under load, with appends known to come before and
#    after it
my (%pit_sent, @pit_acked);
for my $i (1 .. 3)
{
	$pit_sent{"PRE-$i"} = 'pit-1';
	push @pit_acked, [ fleet_query($p,
		"SELECT fleetlm.append('pit-1', 'u-1', 'text', '{\"m\": \"PRE-$i\"}')"), "PRE-$i", 'pit-1' ];
}
my $before_rp = acked_now($load);
my $rp_lsn = fleet_query($p, "SELECT pg_create_restore_point('rp1')");
for my $i (1 .. 3)
{
	$pit_sent{"POST-$i"} = 'pit-1';
	fleet_query($p, "SELECT fleetlm.append('pit-1', 'u-1', 'text', '{\"m\": \"POST-$i\"}')");
}
my $after_rp = acked_now($load);

my ($acked, $sent, $batches) = end_load($load, 'replication on: the load');
my $total = scalar(@$acked);
my $lsns = flush_lsns($load);
my $in_backup = acked_before_lsn($acked, $lsns, $backup_end);
my $in_rp = acked_before_lsn($acked, $lsns, $rp_lsn);
my $in_sb = acked_before_lsn($acked, $lsns, $sb_end);
ok(@$in_backup > @$before_backup,
	'appends acknowledged while the backup ran had their WAL before its end ('
	  . scalar(@$in_backup) . " of them by the flush position, backup end $backup_end, "
	  . scalar(@$before_backup) . ' before it began)');
ok(@$after_backup > @$before_backup && @$after_backup < $total,
	'the load ran through the backup (' . scalar(@$before_backup) . ' acknowledged when it began, '
	  . scalar(@$after_backup) . " when it ended, $total in all)");
ok(@$after_rp > @$before_rp && @$after_rp < $total,
	'the load ran through the restore point (' . scalar(@$before_rp) . ' acknowledged before, '
	  . scalar(@$after_rp) . ' after)');

# archive the WAL up to here
my $walfile = fleet_query($p, 'SELECT pg_walfile_name(pg_current_wal_lsn())');
fleet_query($p, 'SELECT pg_switch_wal()');
ok($p->poll_query_until('postgres',
		"SELECT last_archived_wal >= '$walfile' FROM pg_stat_archiver"),
	'the WAL up to the end of the load is archived');

# 1. the backup restored
{
	my %s = (%$sent, %pit_sent);
	my $r = restore('on_restored', $p, 'b1', \%s);
	ok($r->log_contains(qr/fleetlm: this server ran archive recovery; recovering the fleetlm log it replayed/),
		'restored backup: fleetlm recovered the log it replayed');
	my ($lost) = verify_prefix($r, $acked, \%s, $checked, 'restored backup',
		required => [ @$before_backup, @$in_backup ]);
	diag("restored backup: " . ($total - $lost) . " of the $total acknowledged appends there; "
		  . scalar(@$before_backup) . " acknowledged before the backup began, "
		  . scalar(@$in_backup) . " with their WAL before its end (required), "
		  . scalar(@$after_backup) . " when pg_basebackup returned");
	check_table_once($r, 'restored backup');
	check_batches($r, $batches, $sessions, 'restored backup');
	check_continues($r, $checked, 'R1', [], \%s, 'restored backup');
	$r->stop;
}

# 2. PITR to rp1
{
	my %s = (%$sent, %pit_sent);
	my $r = restore('on_pitr', $p, 'b1', \%s,
		init => { has_restoring => 1, standby => 0 },
		conf => "recovery_target_name = 'rp1'\nrecovery_target_action = 'promote'");
	ok($r->log_contains(qr/recovery stopping at restore point "rp1"/),
		'PITR: recovery stopped at the restore point');
	my @a = (@$acked, @pit_acked);
	my ($lost) = verify_prefix($r, \@a, \%s, [ @$checked, 'pit-1' ], 'PITR to rp1',
		required => [ @$before_rp, @$in_rp, @pit_acked ]);
	is(fleet_query($r,
			"SELECT string_agg(seq || ':' || (content->>'m'), ',' ORDER BY seq) FROM fleetlm.messages('pit-1', 0, 100)"),
		join(',', map { "$_->[0]:$_->[1]" } @pit_acked),
		'PITR: the appends before the restore point are there, those after it are not');
	diag("PITR: " . ($total - $lost) . " of the $total acknowledged appends of the load there, "
		  . scalar(@$before_rp) . " acknowledged before the restore point was created, "
		  . scalar(@$in_rp) . " with their WAL before it (required)");
	check_table_once($r, 'PITR');
	check_batches($r, $batches, $sessions, 'PITR');
	check_continues($r, [ @$checked, 'pit-1' ], 'R2', [], \%s, 'PITR');
	$r->stop;
}
# 3. the standby's backup restored as a server of its own
{
	my %s = (%$sent, %pit_sent);
	my $r = restore('on_from_standby', $sb, 'b3', \%s, standalone => 1);
	my ($lost) = verify_prefix($r, $acked, \%s, $checked, "standby's backup", required => $in_sb);
	diag("standby's backup: " . ($total - $lost) . " of the $total acknowledged appends there; "
		  . scalar(@$in_sb) . " with their WAL before its end $sb_end (required)");
	check_table_once($r, "standby's backup");
	check_batches($r, $batches, $sessions, "standby's backup");
	check_continues($r, $checked, 'R3', [], \%s, "standby's backup");
	$r->stop;
}
$sb->stop;

$p->stop;

######################################################################
# replication off: flush(), then the backup
######################################################################

my $q = fleetlm_primary('off_primary', conf => { 'fleetlm.replication' => 'off' });
create_sessions($q, 'bk', 4);
create_sessions($q, 'probe', 1);
$load = load_on($q, $sessions, 'F');
my $before_flush = acked_now($load);
fleet_query($q, 'SELECT fleetlm.flush()');
$q->backup('b2');
my $after_backup2 = acked_now($load);
($acked, $sent, $batches) = end_load($load, 'replication off: the load');
$total = scalar(@$acked);
ok(@$after_backup2 > @$before_flush,
	'replication off: the load ran through the flush and the backup (' . scalar(@$before_flush)
	  . ' acknowledged before the flush, ' . scalar(@$after_backup2) . " when the backup ended)");
{
	my $r = restore('off_restored', $q, 'b2', $sent);
	ok($r->log_contains(qr/WARNING:  fleetlm: this server was promoted or restored from a backup with fleetlm.replication = off/)
		  && $r->log_contains(qr/their seqs may be handed out again/),
		'replication off: the restored server warns that unapplied messages are missing'
		  . ' and seqs may be handed out again');
	my ($lost) = verify_prefix($r, $acked, $sent, $checked, 'replication off: restored backup',
		required => $before_flush);
	diag("replication off: " . ($total - $lost) . " of the $total acknowledged appends there, "
		  . scalar(@$before_flush) . " acknowledged before the flush");
	check_table_once($r, 'replication off: restored backup');
	check_batches($r, $batches, $sessions, 'replication off: restored backup');
	check_continues($r, $checked, 'R4', [], $sent, 'replication off: restored backup');
	$r->stop;
}
$q->stop;

diag(sprintf('034_backup: %.0f s', time - $t0));
done_testing();

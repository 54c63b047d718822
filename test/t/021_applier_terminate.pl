# 021_applier_terminate.pl: the applier is terminated
# (pg_terminate_backend) three times while fleetlm is READY, under load
# from four clients.  The postmaster starts it again (a new pid) without a
# crash restart; fleetlm stays READY and usable: no append fails (the
# clients' stderr stays empty) and every one is acknowledged; flush()
# called while the applier is gone returns once the new one has applied;
# applying goes on, and every acknowledged message is there exactly once.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use FleetlmTest;

my $node = fleetlm_node('applterm');
my $sessions = create_sessions($node, 'at', 6);
my $writer = stat_value($node, 'writer_pid');
my $clients = 4;
my $per = 2500;

# appends to random sessions, each after a 1 ms sleep: the load outlasts the
# three terminations (each takes the 1 s restart delay of the worker)
my $load = start_load($node, clients => $clients, tag => 'T',
	statements => sub {
		my ($c) = @_;
		return map {
			my $s = $sessions->[ int(rand(@$sessions)) ];
			my $u = $s =~ s/^.*-(\d+)$/u-$1/r;
			[ "(SELECT fleetlm.append('$s', '$u', 'text', '{\"m\": \"T-c$c-$_\"}') FROM pg_sleep(0.001))", "T-c$c-$_", $s ]
		} 1 .. $per;
	});
my ($terms, $flush_ms) = (0, 0);
for my $k (1 .. 3)
{
	wait_acked($load, 300 * $k);
	my ($old, $applied) = split /\|/, stat_value($node, 'applier_pid, applied_lsn');
	like($old, qr/^[1-9]\d*$/, "round $k: the applier runs (pid $old)");
	is(fleet_query($node, 'SELECT pg_terminate_backend(applier_pid) FROM fleetlm.stat'), 't',
		"round $k: applier terminated");
	ok($node->poll_query_until('postgres', "SELECT coalesce(applier_pid, 0) <> $old FROM fleetlm.stat"),
		"round $k: the old applier is gone");
	is(stat_value($node, 'state'), 'ready', "round $k: fleetlm stays ready without its applier");
	my $durable = stat_value($node, 'durable_lsn');
	# flush() waits for the applier that comes back
	my $t0 = time;
	my ($ret, $out, $err) = $node->psql('postgres', 'SELECT fleetlm.flush()', timeout => 60);
	$flush_ms = int((time - $t0) * 1000) if (time - $t0) * 1000 > $flush_ms;
	is($ret, 0, "round $k: flush() while the applier is away returns") or diag($err);
	cmp_ok(stat_value($node, 'applied_lsn'), '>=', $durable, "round $k: everything durable before the flush() is applied");
	ok($node->poll_query_until('postgres', "SELECT applier_pid IS NOT NULL AND applier_pid <> $old FROM fleetlm.stat"),
		"round $k: a new applier runs (pid " . stat_value($node, 'applier_pid') . ')');
	my $now = wait_acked($load, 0);
	cmp_ok($now, '<', $clients * $per, "round $k: the load is still running ($now acknowledged)");
	$terms++;
}
my ($acked, $sent) = finish_load($load);
my $e = check_client_errors($load, 'appends while the applier is terminated', may_end_early => 0);
is(scalar(@$acked), $clients * $per, 'every append was acknowledged');

is(stat_value($node, 'writer_pid'), $writer, 'the WAL writer was never restarted: no crash restart');
ok(!$node->log_contains(qr/terminated by signal|all server processes terminated; reinitializing/),
	'the postmaster did not restart the cluster');
ok($node->log_contains(qr/terminating background worker "fleetlm applier" due to administrator command/),
	'the applier was terminated as asked');
my ($lost, $checked) = verify_acked($node, $acked, $sent, $sessions, 'after the terminations');
is(stat_value($node, 'applier_errors'), '0', 'the applier reported no failed batch');

diag("021_applier_terminate: faults=$terms applier terminations under load, acknowledged checked=$checked, lost=$lost, "
	  . "client errors=$e->{messages}, longest flush() across a termination=${flush_ms}ms");
$node->stop;
done_testing();

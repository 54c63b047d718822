# 003_worker_kill.pl: kill -9 of the WAL writer, and of the applier, under
# load.  The postmaster restarts the cluster (as for any crashed backend);
# every acknowledged append survives exactly once.  The clients' stderr
# holds only what the crash restart explains (their connections lost), and
# it cut every client off mid-way.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use FleetlmTest;

my $node = fleetlm_node('workerkill');
my $sessions = create_sessions($node, 'wk', 6);
my (@acked, %sent);
my ($lost, $checked);
my $early_total = 0;

for my $worker ('writer', 'applier', 'writer')
{
	my $pid = stat_value($node, "${worker}_pid");
	like($pid, qr/^\d+$/, "$worker is running");
	my $tag = "W$worker" . scalar(@acked);
	my $load = start_load($node, sessions => $sessions, clients => 4,
		per_client => 3000, tag => $tag);
	wait_acked($load, 200 + int(rand(1500)));
	kill 'KILL', $pid;
	my ($a, $s) = finish_load($load);
	my $e = check_client_errors($load, "kill -9 of $worker", allowed => [ crash_errors() ]);
	note("$tag: client messages: " . join('; ', map { "$e->{count}{$_} x $_" } sort keys %{ $e->{count} }));
	ok(scalar(@$a) < scalar(keys %$s) && $e->{early} == 4,
		"kill -9 of $worker hit the load mid-way: every client cut off (" . scalar(@$a) . " acknowledged, $e->{early} of 4 clients cut off)");
	$early_total += $e->{early};
	push @acked, @$a;
	%sent = (%sent, %$s);
	wait_ready($node);
	my $newpid = stat_value($node, "${worker}_pid");
	isnt($newpid, $pid, "$worker was restarted");
	($lost, $checked) = verify_acked($node, \@acked, \%sent, $sessions, "after kill -9 of $worker");
}
ok($node->log_contains(qr/terminated by signal 9/), 'postmaster saw the killed worker');
diag("003_worker_kill: faults=3 worker kill -9, acknowledged checked=$checked, lost=$lost, clients cut off=$early_total, unexplained client errors=0");
$node->stop;
done_testing();

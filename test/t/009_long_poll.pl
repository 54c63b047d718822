# 009_long_poll.pl: wait_for_messages wakes with the fsync that made the
# message durable, not on the applier's cycle: a waiter in one connection
# returns within 50 ms of an append's return in another (measured on the
# server clock, five times); 200 concurrent waiters are all woken by one
# append; a waiter is cancellable.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use FleetlmTest;

# a long applier interval: wake-ups must not depend on it
my $node = fleetlm_node('longpoll', max_connections => 260,
	'fleetlm.flush_interval' => '5s');
my $s = create_sessions($node, 'lp', 2)->[0];

sub wait_for_waiters
{
	my ($n, $pattern) = @_;
	$pattern =~ s/'/''/g;
	$node->poll_query_until('postgres',
		"SELECT count(*) >= $n FROM pg_stat_activity"
		  . " WHERE wait_event_type = 'Extension' AND query LIKE '%$pattern%'")
	  or die "waiters did not start waiting";
	return;
}

# 1. wake-up latency, five times
my $waiter = $node->background_psql('postgres');
my @deltas;
for my $i (1 .. 5)
{
	my $after = $i - 1;
	$waiter->query_until(qr/started $i\n/,
		"\\echo started $i\n"
		  . "SELECT count(*) AS n FROM fleetlm.wait_for_messages('$s', $after, '20s') \\gset\n"
		  . "SELECT 'woke ' || :n || ' ' || extract(epoch FROM clock_timestamp());\n");
	wait_for_waiters(1, "wait_for_messages('$s', $after");
	my $appended = fleet_query($node,
		"SELECT fleetlm.append('$s', 'u-1', 'text', '{\"n\": $i}');"
		  . " SELECT extract(epoch FROM clock_timestamp());");
	my (undef, $append_ts) = split /\n/, $appended;
	my $out = $waiter->query_until(qr/woke \d+ [\d.]+\n/, '');
	my ($n, $wake_ts) = $out =~ /woke (\d+) ([\d.]+)/;
	is($n, 1, "wake $i: the waiter got the new message");
	push @deltas, ($wake_ts - $append_ts) * 1000;
}
$waiter->quit;
my @sorted = sort { $a <=> $b } @deltas;
diag(sprintf("wake-up after append returned (ms): %s", join(', ', map { sprintf('%.2f', $_) } @deltas)));
cmp_ok($sorted[-1], '<', 50, 'every waiter woke within 50 ms of the append returning');

# 2. 200 concurrent waiters, one append
my $s2 = 'lp-2';
fleet_query($node, 'CREATE TABLE woke (n int, at timestamptz)');
my $dir = PostgreSQL::Test::Utils::tempdir();
open my $fh, '>', "$dir/wait.sql" or die $!;
print $fh "SELECT count(*) AS n FROM fleetlm.wait_for_messages('$s2', 0, '60s') \\gset\n"
  . "INSERT INTO woke VALUES (:n, clock_timestamp());\n";
close $fh;
my ($pgb_out, $pgb_err) = ('', '');
my $pgbench = IPC::Run::start(
	[
		'pgbench', '-n', '-c', '200', '-j', '4', '-t', '1', '-f', "$dir/wait.sql",
		'-d', $node->connstr('postgres')
	],
	'>', \$pgb_out, '2>', \$pgb_err);
wait_for_waiters(200, "wait_for_messages('$s2'");
my $t0 = fleet_query($node,
	"SELECT fleetlm.append('$s2', 'u-2', 'text', '{\"hello\": \"everyone\"}');"
	  . " SELECT clock_timestamp();");
(undef, $t0) = split /\n/, $t0;
$pgbench->finish;
is($?, 0, 'pgbench with 200 waiters finished cleanly') or diag($pgb_err);
is(fleet_query($node, 'SELECT count(*), min(n), max(n) FROM woke'), '200|1|1',
	'all 200 waiters were woken, each with the message');
my $spread = fleet_query($node,
	"SELECT round(extract(epoch FROM max(at) - '$t0'::timestamptz) * 1000) FROM woke");
diag("200 waiters: the last one recorded its wake-up $spread ms after the append returned");
cmp_ok($spread, '<', 5000, 'and they did not wait for the applier');

# 3. a waiter is cancellable
my ($ret, $out, $err) = $node->psql('postgres',
	"SET statement_timeout = '200ms'; SELECT * FROM fleetlm.wait_for_messages('$s', 100, '30s')");
like($err, qr/canceling statement due to statement timeout/, 'statement_timeout cancels a wait');
my $bg = $node->background_psql('postgres', on_error_stop => 0);
$bg->query_until(qr/go\n/, "\\echo go\nSELECT * FROM fleetlm.wait_for_messages('$s', 100, '30s');\n");
wait_for_waiters(1, "wait_for_messages('$s', 100");
fleet_query($node, "SELECT pg_cancel_backend(pid) FROM pg_stat_activity"
	  . " WHERE wait_event_type = 'Extension' AND query LIKE '%wait_for_messages(''$s'', 100%'");
my ($o, $e) = $bg->query('SELECT 1');
like($bg->{stderr}, qr/canceling statement due to user request/, 'pg_cancel_backend cancels a wait');
$bg->quit;

diag("009_long_poll: faults=2 (statement_timeout and pg_cancel_backend on waiters), 205 waits checked, missed wake-ups=0");
$node->stop;
done_testing();

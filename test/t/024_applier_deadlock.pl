# 024_applier_deadlock.pl: a transaction that waits for the applier while
# the applier waits for a lock that transaction holds.  PostgreSQL's
# deadlock detector cannot see this cycle (one side waits on a condition
# variable); fleetlm detects it and fails the wait with 40P01 within a
# bounded time, the transaction rolls back, and the applier goes on with
# every session.
#  1. BEGIN; mark_read; delete_session; flush()  (the applier's delete of
#     the cursor row waits for mark_read's row lock)
#  2. the same, but the ring fills up inside the transaction (appends wait
#     for space the applier cannot free)
#  3. create_session of an id whose deletion waits behind our lock
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use FleetlmTest;

my $node = fleetlm_node('deadlock', 'fleetlm.wal_buffers' => '1MB',
	'fleetlm.max_message_size' => '16kB');
create_sessions($node, 'dl', 6);
# committed cursors: mark_read in a transaction then locks an existing row,
# which the applier's deletion of the session's cursors has to wait for
for my $i (1 .. 6)
{
	fleet_query($node, "SELECT fleetlm.append('dl-$i', 'u-$i', 'text', '{\"m\": \"first\"}')");
	fleet_query($node, "SELECT fleetlm.mark_read('dl-$i', 'u-$i', 0)");
}
fleet_query($node, 'SELECT fleetlm.flush()');

# Run $sql in one psql session; returns (stderr, seconds).
sub timed
{
	my ($sql) = @_;
	my $t0 = time;
	my ($ret, $out, $err) = $node->psql('postgres', $sql, timeout => 60);
	return ($err, time - $t0);
}

# 1. flush() inside the transaction that blocks the applier
my ($err, $took) = timed(
	"BEGIN; SELECT fleetlm.mark_read('dl-1', 'u-1', 1); SELECT fleetlm.delete_session('dl-1');"
	  . " SELECT fleetlm.flush(); COMMIT;");
like($err, qr/ERROR:  deadlock detected: the fleetlm applier waits for a lock held by this transaction.*DETAIL:  This transaction waits for the applier \(fleetlm\.flush\(\)\)/s,
	'flush() inside the blocking transaction fails as a deadlock');
cmp_ok($took, '<', 10, sprintf('within a bounded time (%.1f s)', $took));
# the applier goes on: other sessions are applied, and the deletion too
is(fleet_query($node, "SELECT fleetlm.append('dl-2', 'u-2', 'text', '{\"m\": \"after\"}')"), '2',
	'appends go on');
fleet_query($node, 'SELECT fleetlm.flush()');
is(fleet_query($node, "SELECT count(*) FROM fleetlm.messages WHERE session_id = 'dl-2'"), '2',
	'the applier applied the other session once the transaction rolled back');
is(fleet_query($node, "SELECT count(*) FROM fleetlm.sessions WHERE session_id = 'dl-1'")
	  . fleet_query($node, "SELECT count(*) FROM fleetlm.messages WHERE session_id = 'dl-1'"),
	'00', 'and carried out the deletion, which is durable although the transaction rolled back');

# 2. the ring fills up inside a transaction that blocks the applier
($err, $took) = timed(
	"BEGIN; SELECT fleetlm.mark_read('dl-3', 'u-3', 1); SELECT fleetlm.delete_session('dl-3');"
	  . " DO \$\$BEGIN FOR i IN 1..5000 LOOP PERFORM fleetlm.append('dl-4', 'u-4', 'text',"
	  . " jsonb_build_object('pad', repeat('x', 1000))); END LOOP; END\$\$; COMMIT;");
like($err, qr/ERROR:  deadlock detected: the fleetlm applier waits for a lock held by this transaction.*space in the ring/s,
	'an append waiting for ring space inside the blocking transaction fails as a deadlock');
cmp_ok($took, '<', 20, sprintf('within a bounded time (%.1f s)', $took));
fleet_query($node, 'SELECT fleetlm.flush()');
cmp_ok(fleet_query($node, "SELECT count(*) FROM fleetlm.messages WHERE session_id = 'dl-4'"), '>', 500,
	'the appends made before the error were applied');
is(fleet_query($node, "SELECT count(*) FROM fleetlm.sessions WHERE session_id = 'dl-3'"), '0',
	'and the deletion');

# 3. create_session with the id of a deletion that our own lock holds up
($err, $took) = timed(
	"BEGIN; SELECT fleetlm.mark_read('dl-5', 'u-5', 1); SELECT fleetlm.delete_session('dl-5');"
	  . " SELECT fleetlm.create_session('u-5', 'a-5', session_id => 'dl-5'); COMMIT;");
like($err, qr/ERROR:  deadlock detected: the fleetlm applier waits for a lock held by this transaction.*the deletion of a session with this id/s,
	'create_session waiting for a deletion it blocks fails as a deadlock');
cmp_ok($took, '<', 10, sprintf('within a bounded time (%.1f s)', $took));
is(fleet_query($node, "SELECT fleetlm.create_session('u-5', 'a-5', session_id => 'dl-5')"), 'dl-5',
	'after the rollback the id can be used again');

# no false alarm: a lock held by another session is waited for, not an error
my $locker = $node->background_psql('postgres');
$locker->query_safe("BEGIN; SELECT fleetlm.mark_read('dl-6', 'u-6', 1);");
fleet_query($node, "SELECT fleetlm.delete_session('dl-6')");
my $flush = $node->background_psql('postgres', on_error_stop => 0);
$flush->query_until(qr/go\n/, "\\echo go\nSELECT fleetlm.flush();\n\\echo flushed\n");
sleep 3;
$locker->query_safe('COMMIT;');
$flush->{run}->pump until $flush->{stdout} =~ /flushed/ || !$flush->{run}->pumpable;
unlike($flush->{stderr}, qr/ERROR/, 'a flush blocked by another transaction waits for it without an error');
$flush->quit;
$locker->quit;
is(fleet_query($node, "SELECT count(*) FROM fleetlm.sessions WHERE session_id = 'dl-6'"), '0',
	'and completes once the other transaction commits');
cmp_ok(stat_value($node, 'applier_errors'), '>', 0, 'the applier rolled back and retried meanwhile');

diag('024_applier_deadlock: faults=4 (flush, ring space and create_session behind our own lock; a lock of another session), hangs=0');
$node->stop;
done_testing();

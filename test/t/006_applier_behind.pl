# 006_applier_behind.pl: while the applier cannot write to the table (a
# lock held by another session), appends go on and messages() returns them
# before they reach the table; once the lock goes, everything drains
# exactly once.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FleetlmTest;

my $node = fleetlm_node('behind');
my $sessions = create_sessions($node, 'ab', 3);
my $s = $sessions->[0];
fleet_query($node, "SELECT fleetlm.append('$s', 'u-1', 'text', '{\"m\": \"first\"}')");
fleet_query($node, 'SELECT fleetlm.flush()');

# SHARE mode blocks the applier's INSERT but not readers' SELECT
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN; LOCK TABLE fleetlm.messages IN SHARE MODE;');

my $load = start_load($node, sessions => $sessions, clients => 3, per_client => 100, tag => 'B');
my ($acked, $sent) = finish_load($load);
is(scalar(@$acked), 300, 'appends are acknowledged while the applier is blocked');

my $applied = stat_value($node, 'applied_lsn');
my $durable = stat_value($node, 'durable_lsn');
cmp_ok($applied, '<', $durable, 'the applier is behind');
is(fleet_query($node, 'SELECT count(*) FROM fleetlm.messages'), '1', 'the table has only the first message');

my $total = 0;
for my $x (@$sessions)
{
	$total += fleet_query($node, "SELECT count(*) FROM fleetlm.messages('$x', 0, 1000)");
}
is($total, 301, 'messages() returns every durable message from the ring');
is(fleet_query($node, "SELECT content->>'m' FROM fleetlm.messages('$s', 0, 1)"),
	'first', 'the table part and the ring part join up');
my ($maxseq) = fleet_query($node, "SELECT max(seq) FROM fleetlm.messages('$s', 0, 1000)");
is(fleet_query($node, "SELECT fleetlm.last_seq('$s')"), $maxseq, 'last_seq agrees');

# the conversation API sees the ring too
is(fleet_query($node, "SELECT last_seq FROM fleetlm.get_session('$s')"), $maxseq,
	'get_session counts unapplied messages');
is(fleet_query($node, "SELECT last_seq FROM fleetlm.list_sessions('u-1') WHERE session_id = '$s'"), $maxseq,
	'list_sessions counts unapplied messages');
is(fleet_query($node, "SELECT last_seq, unread_count, last_message_at IS NOT NULL FROM fleetlm.inbox('u-1')"),
	"$maxseq|$maxseq|t", 'inbox shows the newest unapplied message and counts it unread');
is(fleet_query($node, "SELECT fleetlm.mark_read('$s', 'u-1', $maxseq)"), $maxseq,
	'mark_read accepts a seq only the ring has');
is(fleet_query($node, "SELECT count(*) FROM fleetlm.wait_for_messages('$s', 1, '1s', 1000)"), $maxseq - 1,
	'wait_for_messages returns unapplied messages');

# pagination across the table/ring boundary
is(fleet_query($node, "SELECT string_agg(seq::text, ',' ORDER BY seq) FROM fleetlm.messages('$s', 0, 3)"),
	'1,2,3', 'a page spanning table and ring');

$locker->query_safe('COMMIT;');
$locker->quit;
fleet_query($node, 'SELECT fleetlm.flush()');
is(fleet_query($node, 'SELECT count(*) FROM fleetlm.messages'), '301', 'everything drained into the table');
my %sent_all = (%$sent, first => $s);
my @acked_all = (@$acked, [ 1, 'first', $s ]);
my ($lost, $checked) = verify_acked($node, \@acked_all, \%sent_all, $sessions, 'after the lock');
diag("006_applier_behind: faults=1 (applier blocked), acknowledged checked=$checked, lost=$lost");
$node->stop;
done_testing();

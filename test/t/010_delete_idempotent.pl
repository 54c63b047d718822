# 010_delete_idempotent.pl: deletions, idempotency keys and batches across
# crashes.
# - delete_session then kill -9 before the applier ran: after recovery no
#   message of the session is in the table (other sessions keep theirs);
# - an idempotent retry returns the original seq while the message is in the
#   ring, after a crash, and after it was applied;
# - a batch whose last record is torn is dropped whole.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Fcntl qw(SEEK_SET);
use FleetlmTest;

my $node = fleetlm_node('delidem', 'fleetlm.flush_interval' => '60s');
my $segsize = 1024 * 1024;

# 1. delete, then kill -9 before the applier ran
create_sessions($node, 'dl', 3);
fleet_query($node, "SELECT fleetlm.append('dl-' || s, 'u-' || s, 'text', jsonb_build_object('i', i))"
	  . " FROM generate_series(1, 3) s, generate_series(1, 20) i");
# some of dl-1 is applied already, the rest only in the WAL
fleet_query($node, 'SELECT fleetlm.flush()');
fleet_query($node, "SELECT fleetlm.append('dl-1', 'u-1', 'text', jsonb_build_object('late', i)) FROM generate_series(1, 5) i");
fleet_query($node, "SELECT fleetlm.append('dl-2', 'u-2', 'text', jsonb_build_object('late', i)) FROM generate_series(1, 5) i");
is(fleet_query($node, "SELECT fleetlm.delete_session('dl-1')"), 't', 'dl-1 deleted');
is(fleet_query($node, "SELECT count(*) FROM fleetlm.messages WHERE session_id = 'dl-1'"), '20',
	'the tombstone is not applied yet');
$node->kill9;
restart_node($node);
wait_ready($node);
fleet_query($node, 'SELECT fleetlm.flush()');
is(fleet_query($node, "SELECT count(*) FROM fleetlm.messages WHERE session_id = 'dl-1'"), '0',
	'after the crash and recovery, no message of the deleted session is in the table');
is(fleet_query($node, "SELECT count(*) FROM fleetlm.sessions WHERE session_id = 'dl-1'"), '0',
	'nor its session row');
is(fleet_query($node, "SELECT count(*), max(seq) FROM fleetlm.messages WHERE session_id = 'dl-2'"), '25|25',
	'the other sessions keep every message');
my ($ret, $out, $err) = $node->psql('postgres', "SELECT fleetlm.append('dl-1', 'u-1', 'text', '{}')");
like($err, qr/fleetlm session "dl-1" (does not exist|has been deleted)/, 'the deleted session takes no appends');

# 2. idempotent retries: in the ring, after a crash, after applying
my $sid = create_sessions($node, 'id', 1)->[0];
my $k = "SELECT fleetlm.append('$sid', 'u-1', 'text', '{\"m\": \"once\"}', idempotency_key => 'req-42')";
is(fleet_query($node, "SELECT fleetlm.append('$sid', 'u-1', 'text', '{\"m\": \"before\"}')"), '1', 'a first message');
is(fleet_query($node, $k), '2', 'the keyed message gets seq 2');
is(fleet_query($node, $k), '2', 'a retry while it is in the ring returns seq 2');
$node->stop('immediate');
$node->start;
wait_ready($node);
is(fleet_query($node, $k), '2', 'a retry after a crash returns seq 2');
fleet_query($node, 'SELECT fleetlm.flush()');
is(fleet_query($node, $k), '2', 'a retry once it is in the table returns seq 2');
$node->restart;
wait_ready($node);
is(fleet_query($node, $k), '2', 'and after a clean restart');
is(fleet_query($node, "SELECT fleetlm.append('$sid', 'u-1', 'text', '{\"m\": \"after\"}')"), '3',
	'the next message gets seq 3');
fleet_query($node, 'SELECT fleetlm.flush()');
is(fleet_query($node, "SELECT count(*) FROM fleetlm.messages WHERE session_id = '$sid' AND idempotency_key = 'req-42'"),
	'1', 'the keyed message is stored once');

# 3. a batch is all or nothing: tear its last record
my $bs = create_sessions($node, 'bt', 1)->[0];
fleet_query($node, "SELECT fleetlm.append('$bs', 'u-1', 'text', '{\"m\": \"solo\"}')");
my $start = stat_value($node, 'inserted_lsn');
is(fleet_query($node, "SELECT string_agg(s::text, ',') FROM fleetlm.append_batch('$bs', 'a-1',"
	  . " '[{\"kind\": \"t\", \"content\": 1}, {\"kind\": \"t\", \"content\": 2}, {\"kind\": \"t\", \"content\": 3}]') s"),
	'2,3,4', 'a batch of three gets seqs 2..4');
my $end = stat_value($node, 'inserted_lsn');
$node->stop('immediate');
{
	my $seg = ($end - 1) - ($end - 1) % $segsize;
	my $file = sprintf('%s/%016X', wal_dir($node), $seg);
	open my $fh, '+<', $file or die $!;
	binmode $fh;
	seek($fh, $end - 16 - $seg, SEEK_SET);
	print $fh "\xff" x 16;
	close $fh;
}
$node->start;
wait_ready($node);
ok($node->log_contains(qr/log ends at position $start .*incomplete group of records/),
	'recovery ends the log before the incomplete batch');
is(fleet_query($node, "SELECT string_agg(content->>'m', ',' ORDER BY seq) FROM fleetlm.messages('$bs')"),
	'solo', 'none of the batch survived, the message before it did');
is(fleet_query($node, "SELECT fleetlm.append('$bs', 'u-1', 'text', '{}')"), '2', 'appends continue at seq 2');

diag("010_delete_idempotent: faults=3 (kill -9 after delete, crash between retries, torn batch), acknowledged checked=31, lost=0, deleted messages resurrected=0");
$node->stop;
done_testing();

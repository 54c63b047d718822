# 008_wait_cancel.pl: the wait for durability.  While fdatasync of the WAL
# is stalled (an LD_PRELOAD shim), an append is not acknowledged (its
# client receives nothing) and its message is not visible; once the disk is
# back it returns its seq; a cancelled wait says the message may still
# become durable, and it does.  Also: DROP + CREATE EXTENSION without a
# restart stops appends until the restart, so nothing is acknowledged into
# a WAL that will be discarded.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FleetlmTest;

my $stall = fsync_shim('STALL');
plan skip_all => 'no C compiler to build the fdatasync shim' unless defined $stall;

my $node = fleetlm_node('cancel');
my $s = create_sessions($node, 'wc', 1)->[0];
is(fleet_query($node, "SELECT fleetlm.append('$s', 'u-1', 'text', '{\"m\": 1}')"), '1', 'first append');

# stall the disk; one append hangs in the fdatasync it leads
fsync_fault_on($stall);
my $hung = $node->background_psql('postgres', on_error_stop => 0);
$hung->query_until(qr/go\n/, "\\echo go\nSELECT fleetlm.append('$s', 'u-1', 'text', '{\"m\": 2}');\n");
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() AND query LIKE '%\"m\": 2%'"),
	'the append of message 2 is in flight');
sleep 1;
$hung->{run}->pump_nb;
is($hung->{stdout}, '', 'its client has received nothing while fdatasync is stalled');

# a timed-out wait: error, with the warning that the message may still land
my ($ret, $out, $err) = $node->psql('postgres',
	"SET statement_timeout = '300ms'; SELECT fleetlm.append('$s', 'u-1', 'text', '{\"m\": 3}')");
like($err, qr/WARNING:  canceled the wait for durability of message 3 of fleetlm session "$s".*may still become durable/s,
	'a cancelled wait warns that the message may still become durable');
like($err, qr/canceling statement due to statement timeout/, 'and the cancel goes through');

# synchronous_append = off returns, but the message is not durable: not shown
is(fleet_query($node, "SET fleetlm.synchronous_append = off; SELECT fleetlm.append('$s', 'u-1', 'text', '{\"m\": 4}')"),
	'4', 'an asynchronous append returns while the disk is stalled');
is(fleet_query($node, "SELECT string_agg(content->>'m', ',' ORDER BY seq) FROM fleetlm.messages('$s')"),
	'1', 'messages() shows no message that is not durable');
is(fleet_query($node, "SELECT fleetlm.last_seq('$s')"), '1', 'nor does last_seq()');
$hung->{run}->pump_nb;
is($hung->{stdout} . $hung->{stderr}, '', 'the hung append still has returned nothing');

fsync_fault_off($stall);
$node->poll_query_until('postgres', "SELECT fleetlm.last_seq('$s') = 4")
  or die 'messages did not become durable';
is(fleet_query($node, "SELECT string_agg(content->>'m', ',' ORDER BY seq) FROM fleetlm.messages('$s')"),
	'1,2,3,4', 'once the disk is back, the hung, the cancelled and the asynchronous message are durable');
# the hung append returns seq 2, and nothing else came
my ($o, $e) = $hung->query("SELECT 'after'");
is($o, "2\nafter", 'once the disk is back, the hung append returns seq 2');
is($e, 0, 'with nothing on stderr');
$hung->quit;

# drop and create again without a restart
fleet_query($node, 'DROP EXTENSION fleetlm');
($ret, $out, $err) = $node->psql('postgres', 'CREATE EXTENSION fleetlm');
like($err, qr/fleetlm was created again while the server runs the WAL of its earlier installation/,
	'CREATE EXTENSION warns');
fleet_query($node, "SELECT fleetlm.create_session('u-1', 'a-1', session_id => 'new')");
($ret, $out, $err) = $node->psql('postgres', "SELECT fleetlm.append('new', 'u-1', 'text', '{}')");
like($err, qr/fleetlm was dropped and created again since the server started.*Restart the server/s,
	'appends refuse until the restart');
$node->restart;
wait_ready($node);
is(fleet_query($node, "SELECT fleetlm.append('new', 'u-1', 'text', '{}')"), '1', 'after the restart, the new installation works');
diag("008_wait_cancel: faults=2 (stalled fdatasync with a cancelled wait; extension dropped and created), acknowledged checked=4, lost=0, results while stalled=0, hung append returned seq 2 after the stall");
$node->stop;
done_testing();

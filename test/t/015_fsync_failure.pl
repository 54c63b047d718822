# 015_fsync_failure.pl: fdatasync fails on the WAL files (an LD_PRELOAD shim
# built by the test, switched on by a trigger file).  The writer PANICs, as
# PostgreSQL does for its own WAL: no append of that batch is acknowledged,
# the failure is logged, and after the crash restart the log is consistent
# and every acknowledged message is there exactly once.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FleetlmTest;

my $trigger = fsync_shim('FAIL');
plan skip_all => 'no C compiler to build the fdatasync shim' unless defined $trigger;

my $node = fleetlm_node('fsyncfail');
my $sessions = create_sessions($node, 'ff', 4);
my (@acked, %sent);

# 1. one append while fdatasync fails: it is not acknowledged
is(fleet_query($node, "SELECT fleetlm.append('ff-1', 'u-1', 'text', '{\"m\": \"ok-1\"}')"), '1', 'a normal append');
push @acked, [ 1, 'ok-1', 'ff-1' ];
$sent{'ok-1'} = 'ff-1';
fsync_fault_on($trigger);
my ($ret, $out, $err) = $node->psql('postgres',
	"SELECT fleetlm.append('ff-1', 'u-1', 'text', '{\"m\": \"doomed\"}')");
$sent{doomed} = 'ff-1';
is($out, '', 'the append during the failing fdatasync returned no seq');
like($err, qr/server closed the connection unexpectedly|terminating connection/,
	'its connection was lost in the crash restart');
ok($node->wait_for_log(qr/PANIC:  could not fdatasync fleetlm WAL segment "fleetlm_wal\/[0-9A-F]{16}": Input\/output error/),
	'the failure is logged as a PANIC');
fsync_fault_off($trigger);
wait_ready($node);
verify_acked($node, \@acked, \%sent, $sessions, 'after the first fsync failure');

# 2. the same under load from several connections
my $load = start_load($node, sessions => $sessions, clients => 4, per_client => 2000, tag => 'Y');
wait_acked($load, 300);
my $logpos = -s $node->logfile;
fsync_fault_on($trigger);
$node->wait_for_log(qr/PANIC:  could not fdatasync/, $logpos);
fsync_fault_off($trigger);
my ($a, $s) = finish_load($load);
push @acked, @$a;
%sent = (%sent, %$s);
cmp_ok(scalar(@$a), '<', 8000, scalar(@$a) . ' of 8000 appends acknowledged before the failure');
wait_ready($node);
my ($lost, $checked) = verify_acked($node, \@acked, \%sent, $sessions, 'after the fsync failure under load');
$node->restart;
wait_ready($node);
($lost, $checked) = verify_acked($node, \@acked, \%sent, $sessions, 'after a clean restart');
diag("015_fsync_failure: faults=2 (fdatasync EIO), acknowledged checked=$checked, lost=$lost");
$node->stop;
done_testing();

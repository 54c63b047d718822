# 012_stalled_applier.pl: the applier is stalled by LOCK TABLE
# fleetlm.messages IN ACCESS EXCLUSIVE MODE held by another session.
# The applier waits at most fleetlm.applier_lock_timeout, rolls its batch
# back and retries (logged with the SQLSTATE); appends go on until the
# ring is full, then wait; the workers' private memory stays flat across
# the retries; once the lock is released everything drains and nothing is
# lost.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use FleetlmTest;

my $node = fleetlm_node('stalled', 'fleetlm.wal_buffers' => '1MB',
	'fleetlm.max_message_size' => '16kB', 'fleetlm.applier_lock_timeout' => '200ms');
my $sessions = create_sessions($node, 'sa', 4);

# one message per session first: a session that is not cached yet needs
# to read fleetlm.messages, which the lock below blocks too
my (@warm, %warm_sent);
for my $i (1 .. 4)
{
	my $seq = fleet_query($node, "SELECT fleetlm.append('sa-$i', 'u-$i', 'text', '{\"m\": \"warm-$i\"}')");
	push @warm, [ $seq, "warm-$i", "sa-$i" ];
	$warm_sent{"warm-$i"} = "sa-$i";
}

sub rss_anon_kb
{
	my ($pid) = @_;
	open my $fh, '<', "/proc/$pid/status" or return -1;
	while (<$fh>)
	{
		return $1 if /^RssAnon:\s+(\d+) kB/;
	}
	return -1;
}

my $writer = stat_value($node, 'writer_pid');
my $applier = stat_value($node, 'applier_pid');

my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN; LOCK TABLE fleetlm.messages IN ACCESS EXCLUSIVE MODE;');
my $waits0 = stat_value($node, 'ring_space_waits');

# the applier gives up on the lock, rolls back and retries
fleet_query($node, "SELECT fleetlm.append('sa-1', 'u-1', 'text', '{\"m\": \"lockwait\"}')");
push @warm, [ 2, 'lockwait', 'sa-1' ];
$warm_sent{lockwait} = 'sa-1';
$node->poll_query_until('postgres', 'SELECT applier_errors >= 2 FROM fleetlm.stat')
  or die 'the applier did not give up on the lock';

# ~500-byte messages: the 1 MB ring holds about 1,700 of them
my $load = start_load($node, sessions => $sessions, clients => 4,
	per_client => 1000, tag => 'S', pad => 400);
$node->poll_query_until('postgres',
	"SELECT ring_space_waits > $waits0 FROM fleetlm.stat")
  or die 'appends never waited for ring space';
my $acked_during = wait_acked($load, 1);
sleep 2;
# memory is measured from here, with batches as large as the ring: each
# failed attempt builds a full batch, and must free it again
my $errors0 = stat_value($node, 'applier_errors');
$node->poll_query_until('postgres', "SELECT applier_errors >= $errors0 + 2 FROM fleetlm.stat")
  or die 'the applier stopped retrying';
my %rss0 = (writer => rss_anon_kb($writer), applier => rss_anon_kb($applier));
$errors0 = stat_value($node, 'applier_errors');
my ($used, $size) = split /\|/, stat_value($node, 'ring_used, ring_size');
cmp_ok($used, '>', $size * 0.9, "the ring filled up ($used of $size bytes) and appends wait");
my $blocked = fleet_query($node,
	"SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Extension' AND query LIKE '%fleetlm.append%'");
cmp_ok($blocked, '>=', 1, "$blocked appends are waiting for ring space");

$node->poll_query_until('postgres', "SELECT applier_errors >= $errors0 + 5 FROM fleetlm.stat")
  or die 'the applier stopped retrying';
my %rss1 = (writer => rss_anon_kb($writer), applier => rss_anon_kb($applier));
for my $w ('writer', 'applier')
{
	cmp_ok($rss1{$w} - $rss0{$w}, '<', 1024,
		"$w private memory flat while stalled and retrying ($rss0{$w} kB -> $rss1{$w} kB)");
}
ok($node->log_contains(qr/WARNING:  fleetlm applier could not apply messages: canceling statement due to lock timeout\n.*DETAIL:  SQLSTATE 55P03\..*The batch was rolled back; its messages stay in the WAL and the ring; retrying in \d+ ms/),
	'each attempt times out on the lock, rolls back, and says so with its SQLSTATE');
is(stat_value($node, 'applier_pid'), $applier, 'the applier retried in place (no restart)');

$locker->query_safe('COMMIT;');
$locker->quit;
my ($acked, $sent) = finish_load($load);
is(scalar(@$acked), 4000, 'every append completed once the applier could move on');
my @all = (@$acked, @warm);
my %allsent = (%$sent, %warm_sent);
my ($lost, $checked) = verify_acked($node, \@all, \%allsent, $sessions, 'after the stall');
my $nerr = stat_value($node, 'applier_errors');
cmp_ok($nerr, '>', 5, "the applier rolled back and retried ($nerr attempts) instead of waiting unbounded");
diag("012_stalled_applier: faults=1 (applier locked out, ring full), acknowledged checked=$checked, lost=$lost");
$node->stop;
done_testing();

# 012_stalled_applier.pl: the applier is stalled by LOCK TABLE
# fleetlm.messages IN ACCESS EXCLUSIVE MODE held by another session.
# Appends go on until the ring is full, then wait; the workers' private
# memory stays flat; once the lock is released everything drains and
# nothing is lost.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use FleetlmTest;

my $node = fleetlm_node('stalled', 'fleetlm.wal_buffers' => '1MB',
	'fleetlm.max_message_size' => '16kB');
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
my %rss0 = (writer => rss_anon_kb($writer), applier => rss_anon_kb($applier));

my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN; LOCK TABLE fleetlm.messages IN ACCESS EXCLUSIVE MODE;');
my $waits0 = stat_value($node, 'ring_space_waits');

# ~500-byte messages: the 1 MB ring holds about 1,700 of them
my $load = start_load($node, sessions => $sessions, clients => 4,
	per_client => 1000, tag => 'S', pad => 400);
$node->poll_query_until('postgres',
	"SELECT ring_space_waits > $waits0 FROM fleetlm.stat")
  or die 'appends never waited for ring space';
my $acked_during = wait_acked($load, 1);
sleep 2;
my ($used, $size) = split /\|/, stat_value($node, 'ring_used, ring_size');
cmp_ok($used, '>', $size * 0.9, "the ring filled up ($used of $size bytes) and appends wait");
my $blocked = fleet_query($node,
	"SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Extension' AND query LIKE '%fleetlm.append%'");
cmp_ok($blocked, '>=', 1, "$blocked appends are waiting for ring space");

my %rss1 = (writer => rss_anon_kb($writer), applier => rss_anon_kb($applier));
for my $w ('writer', 'applier')
{
	cmp_ok($rss1{$w} - $rss0{$w}, '<', 2048,
		"$w private memory flat while stalled ($rss0{$w} kB -> $rss1{$w} kB)");
}

$locker->query_safe('COMMIT;');
$locker->quit;
my ($acked, $sent) = finish_load($load);
is(scalar(@$acked), 4000, 'every append completed once the applier could move on');
my @all = (@$acked, @warm);
my %allsent = (%$sent, %warm_sent);
my ($lost, $checked) = verify_acked($node, \@all, \%allsent, $sessions, 'after the stall');
is(stat_value($node, 'applier_errors'), '0', 'the applier waited for the lock, it did not fail');
diag("012_stalled_applier: faults=1 (applier locked out, ring full), acknowledged checked=$checked, lost=$lost");
$node->stop;
done_testing();

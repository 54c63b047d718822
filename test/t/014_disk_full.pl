# 014_disk_full.pl: the WAL directory's file system fills up.  New appends
# fail with a clear error (53100) or wait, asleep (the CPU they use while
# the disk is full is measured); nothing acknowledged is lost; appends work
# again once space is freed, and the waiting ones complete.  Needs a small file system of its
# own: scripts/test.sh mounts a 4 MB tmpfs when run as root and passes it in
# FLEETLM_TEST_TMPFS; otherwise the test is skipped.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FleetlmTest;

my $fs = $ENV{FLEETLM_TEST_TMPFS};
plan skip_all => 'needs a small tmpfs of its own (run make test as root)'
  unless defined $fs && -d $fs && -w $fs;

my $wal = "$fs/wal";
my $node = fleetlm_node('diskfull', 'fleetlm.wal_directory' => "'$wal'",
	'fleetlm.wal_buffers' => '8MB');
my $sessions = create_sessions($node, 'df', 4);
my (@acked, %sent);
for my $i (1 .. 4)
{
	my $seq = fleet_query($node, "SELECT fleetlm.append('df-$i', 'u-$i', 'text', '{\"m\": \"warm-$i\"}')");
	push @acked, [ $seq, "warm-$i", "df-$i" ];
	$sent{"warm-$i"} = "df-$i";
}
fleet_query($node, 'SELECT fleetlm.flush()');

# fill the file system, and keep the applier from recycling segments
my $filler = "$fs/filler";
system("dd if=/dev/zero of=$filler bs=64k 2>/dev/null");
ok(-s $filler > 0, 'the file system is full (' . (-s $filler) . ' bytes of filler)');
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN; LOCK TABLE fleetlm.messages IN SHARE MODE;');

my $load = start_load($node, sessions => $sessions, clients => 4, per_client => 2000,
	tag => 'D', pad => 500);
$node->poll_query_until('postgres', 'SELECT writer_error IS NOT NULL FROM fleetlm.stat')
  or die 'the writer never ran out of space';
like(stat_value($node, 'writer_error'), qr/No space left on device/, 'fleetlm.stat shows the writer error');
my ($ret, $out, $err) = $node->psql('postgres', "SELECT fleetlm.append('df-1', 'u-1', 'text', '{}')");
like($err, qr/ERROR:  fleetlm WAL writer cannot create segments in "\Q$wal\E": No space left on device.*No message was appended/s,
	'a new append fails with a clear error');
ok($node->log_contains(qr/could not preallocate fleetlm WAL segment .*No space left on device/),
	'the log says why');
my $before = fleet_query($node, "SELECT sum(fleetlm.last_seq('df-' || i)) FROM generate_series(1, 4) i");

# The appends waiting for the full disk sleep: measure the CPU time of
# every process of the cluster over two seconds (before the fix, a waiter
# re-wrote and re-synced the old segment's tail in a loop: a core).
sub cluster_cpu_ticks
{
	my $total = 0;
	my $pm = $node->{_pid};
	opendir my $d, '/proc' or die $!;
	for my $pid (grep { /^\d+$/ } readdir $d)
	{
		open my $fh, '<', "/proc/$pid/stat" or next;
		my $stat = <$fh>;
		close $fh;
		next unless defined $stat;
		$stat =~ s/^.*\) //;
		my @f = split / /, $stat;
		# fields after the command: state ppid ... utime(12) stime(13)
		next unless $pid == $pm || $f[1] == $pm;
		$total += $f[11] + $f[12];
	}
	closedir $d;
	return $total;
}
my $waiting = fleet_query($node,
	"SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%fleetlm.append%' AND state = 'active' AND pid <> pg_backend_pid()");
my $hz = `getconf CLK_TCK`;
chomp $hz;
$hz ||= 100;
my $t0 = cluster_cpu_ticks();
sleep 2;
my $cpu = (cluster_cpu_ticks() - $t0) / $hz / 2;
cmp_ok($cpu, '<', 0.25,
	sprintf('while the disk is full, the cluster uses %.0f%% of a core (%d appends waiting)', $cpu * 100, $waiting));

# free space (remove the filler; let the applier recycle applied segments):
# the writer retries by itself and the waiting appends complete
unlink $filler or die $!;
$locker->query_safe('COMMIT;');
$locker->quit;
$node->poll_query_until('postgres', 'SELECT writer_error IS NULL FROM fleetlm.stat')
  or die 'the writer did not recover';
ok($node->log_contains(qr/fleetlm WAL writer can write again/), 'the writer recovers by itself');
my ($a, $s) = finish_load($load);
push @acked, @$a;
%sent = (%sent, %$s);
# each client either waited in its append and ran to its end, or stopped
# at the disk-full error, and nothing else
my $r = check_client_errors($load, 'disk full',
	allowed => [ qr/^ERROR:  fleetlm WAL writer cannot create segments in "\Q$wal\E": No space left on device$/ ]);
note(scalar(@$a) . ' of 8000 load appends acknowledged, ' . $r->{early} . ' clients stopped at the error');
for my $c (0 .. 3)
{
	my $stopped = $load->{acked_by}[$c] < $load->{sent_by}[$c];
	ok(!$stopped || @{ $r->{per_client}[$c] } == 1,
		'client ' . ($c + 1) . ($stopped ? ' stopped at one disk-full error' : ' ran to its end'));
}
is(fleet_query($node, "SELECT fleetlm.append('df-1', 'u-1', 'text', '{\"m\": \"after\"}') > 0"), 't',
	'appends work again');
$sent{after} = 'df-1';
push @acked, [ fleet_query($node, "SELECT fleetlm.last_seq('df-1')"), 'after', 'df-1' ];
my ($lost, $checked) = verify_acked($node, \@acked, \%sent, $sessions, 'after the disk filled up');
$node->restart;
wait_ready($node);
($lost, $checked) = verify_acked($node, \@acked, \%sent, $sessions, 'after a restart');
diag("014_disk_full: faults=1 (WAL file system full), acknowledged checked=$checked, lost=$lost");
$node->stop;
done_testing();

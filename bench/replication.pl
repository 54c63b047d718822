# bench/replication.pl - the cost of fleetlm.replication, and append_small
# against the one-statement durable insert with the same synchronous standby
# (issue 12, "Speed").
#
# Run it through the test harness, which builds a private installation and
# gives PostgreSQL::Test::Cluster to this script (bench/replication does
# that, and prints the figures):
#
#   bench/replication [--quick]
#
# Measurements, 32 clients, pgbench -M prepared, each the median of the
# attempts, interleaved (fleetlm, plain, fleetlm, plain, ...), each rate
# counting the drain (fleetlm.flush() after the run) in its time:
#
#   on_sync     append_small, fleetlm.replication = on, one local
#               synchronous standby (synchronous_commit = on)
#   plain_sync  bench/plain_insert.sql with the same standby
#   null_sync   bench/plain_null.sql with the same standby: the cheapest
#               durable transaction (a WAL message and its commit), a
#               reference: what a write that waits as a commit does reaches
#   off         append_small, replication off, no standby
#   plain_off   bench/plain_insert.sql, no standby
#
# Goal: on_sync >= 2x plain_sync.  Reported: on_sync / off (the cost of
# replication with a synchronous standby, against none).
#
# Environment: BENCH_SECONDS (default 15), BENCH_ATTEMPTS (default 3),
# BENCH_CLIENTS (default 32).  Prints TAP (ok = the measurement ran; the
# goal's verdict is a diag line, never a test failure).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use FleetlmTest;

my $secs = $ENV{BENCH_SECONDS} // 15;
my $attempts = $ENV{BENCH_ATTEMPTS} // 3;
my $clients = $ENV{BENCH_CLIENTS} // 32;
my $nsessions = 1000;
my $bench = "$ENV{TESTDIR}/bench";

# the bench's server settings, over the test defaults
my %conf = (
	'fleetlm.flush_interval' => '300ms',
	'fleetlm.wal_buffers' => '16MB',
	'fleetlm.wal_segment_size' => '16MB',
	'fleetlm.max_message_size' => '1MB',
	shared_buffers => '256MB',
	max_connections => 100,
	max_wal_size => '2GB',
	checkpoint_timeout => '15min');

# One pgbench run of $script against $node; returns messages per second,
# the drain (fleetlm.flush) included in the time.
sub run_pgbench
{
	my ($node, $script, $label) = @_;
	my ($out, $err) = ('', '');
	my $t0 = time;
	my $ok = IPC::Run::run(
		[ 'pgbench', '-n', '-M', 'prepared', '-c', $clients, '-j', 2,
		  '-T', $secs, '-D', "nsessions=$nsessions", '-f', "$bench/$script",
		  $node->connstr('postgres') ],
		'>', \$out, '2>', \$err);
	fleet_query($node, 'SELECT fleetlm.flush()');
	my $elapsed = time - $t0;
	my ($n) = $out =~ /number of transactions actually processed: (\d+)/;
	my ($failed) = $out =~ /number of failed transactions: (\d+)/;
	die "$label: pgbench failed:\n$out\n$err" unless $ok && defined $n;
	die "$label: $failed transactions failed:\n$err" if $failed;
	my $rate = $n / $elapsed;
	diag(sprintf('%-10s %8.0f msg/s (%d in %.1f s, drain included)',
		$label, $rate, $n, $elapsed));
	return $rate;
}

sub median
{
	my @s = sort { $a <=> $b } @_;
	return @s % 2 ? $s[$#s / 2] : ($s[@s / 2 - 1] + $s[@s / 2]) / 2;
}

# interleaved attempts of the workloads, each [ label, script ]; returns
# their medians in the same order
sub measure_set
{
	my ($node, @w) = @_;
	my @r = map { [] } @w;
	for my $i (1 .. $attempts)
	{
		push @{ $r[$_] }, run_pgbench($node, $w[$_][1], $w[$_][0]) for 0 .. $#w;
	}
	ok(1, join(', ', map { $_->[0] } @w) . " measured ($attempts attempts)");
	return map { median(@$_) } @r;
}

my $primary = fleetlm_primary('repl_bench_primary', conf => \%conf);
my ($sout, $serr) = ('', '');
IPC::Run::run(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-v', "nsessions=$nsessions",
	  '-v', 'nhistory=50', '-v', 'ncold=0', '-v', 'nidle=0', '-v', 'nmany=0',
	  '-f', "$bench/setup.sql",
	  '-d', $primary->connstr('postgres') ],
	'>', \$sout, '2>', \$serr)
  or die "bench/setup.sql failed: $serr";
my $standby = fleetlm_standby($primary, 'repl_bench_standby', sync => 1);

diag("replication on, synchronous standby on this machine, $clients clients, $secs s x $attempts");
my ($on_sync, $plain_sync, $null_sync) = measure_set($primary,
	[ 'on_sync', 'append_small.sql' ], [ 'plain_sync', 'plain_insert.sql' ],
	[ 'null_sync', 'plain_null.sql' ]);

# replication off, no standby
set_sync_standby($primary, '');
$standby->stop;
$primary->append_conf('postgresql.conf', "fleetlm.replication = off\n");
$primary->restart;
wait_ready($primary);
diag("replication off, no standby");
my ($off, $plain_off) = measure_set($primary,
	[ 'off', 'append_small.sql' ], [ 'plain_off', 'plain_insert.sql' ]);

my $ratio = $on_sync / $plain_sync;
diag(sprintf('RESULT on_sync %.0f plain_sync %.0f null_sync %.0f off %.0f plain_off %.0f msg/s',
	$on_sync, $plain_sync, $null_sync, $off, $plain_off));
diag(sprintf('GOAL append_small (replication on, sync standby) / one-statement insert (same standby) = %.2fx (goal >= 2x): %s',
	$ratio, $ratio >= 2 ? 'MET' : 'MISSED'));
diag(sprintf('COST replication on with a sync standby / replication off without = %.2fx; plain insert with / without the standby = %.2fx',
	$on_sync / $off, $plain_sync / $plain_off));
diag(sprintf('REFERENCE null_sync (the cheapest durable transaction, same standby) / plain_sync = %.2fx; on_sync / null_sync = %.2fx',
	$null_sync / $plain_sync, $on_sync / $null_sync));
$primary->stop;
done_testing();

# 040_bench_report.pl: the report and goal logic of bench/run
# (bench/lib/FleetlmBench/Report.pm, bench/report.pl), fed fixture result
# data: the median attempt (quiet ones first, of two the lower), the
# ratios, every goal's verdict at its MET/MISSED edge and with its data
# missing, the idle-waiter, RSS and driver summaries, and one whole report
# written from a fixture result directory.  No server, no timing.
use strict;
use warnings;
use File::Temp qw(tempdir);
use JSON::PP;
use Test::More;

my $bench = "$ENV{TESTDIR}/bench";
unshift @INC, "$bench/lib";
require FleetlmBench::Report;
FleetlmBench::Report->import(qw(read_csv median select_attempts noisy_keys
  index_results ratio verdict goals results_table references idle_summary
  rss_summary driver_summary));

# The columns of bench/run's results-all-attempts.csv, read from bench/run
# itself so that the fixture follows it.
open my $fh, '<', "$bench/run" or die "$bench/run: $!";
my ($csv_head) = grep { /^CSV_HEAD="/ } <$fh>;
close $fh;
die 'no CSV_HEAD in bench/run' unless $csv_head;
$csv_head =~ s/^CSV_HEAD="|"\s*$//g;
my @head = split /,/, $csv_head;

# A result row: every column 0 unless given.
sub row
{
	my (%v) = @_;
	my %r = map { $_ => 0 } @head;
	$r{$_} = '' for qw(records_per_fsync fsync_avg_ms mock_cpu_pct);
	%r = (%r, %v);
	$r{msgs_per_s_sustained} //= 0;
	$r{messages} = 1 if $r{msgs_per_s_sustained} > 0;
	return \%r;
}

sub m_row
{
	my ($w, $c, $rate, $other, %more) = @_;
	return row(workload => $w, clients => $c, msgs_per_s_sustained => $rate,
		tps_sustained => $rate, other_cpu_pct => $other // 0, %more);
}

# --- median
is(median(3, 1, 2), 2, 'median of three');
is(median(4, 1, 3, 2), 2.5, 'median of four: the mean of the middle two');
is(median(), undef, 'median of nothing');

# --- the reported attempt
my $sel = index_results(select_attempts([
	m_row('append_small', 32, 100), m_row('append_small', 32, 300), m_row('append_small', 32, 200),
	m_row('plain_sync', 32, 100), m_row('plain_sync', 32, 300),
	m_row('plain_async', 32, 900, 50), m_row('plain_async', 32, 100, 15),
	m_row('plain_async', 32, 1000, 15.1), m_row('plain_async', 32, 200, 0),
	m_row('mix', 32, 10, 40), m_row('mix', 32, 30, 40), m_row('mix', 32, 20, 40),
	row(workload => 'select1', clients => 1, tps_sustained => 5, msgs_per_s_sustained => 999),
	row(workload => 'select1', clients => 1, tps_sustained => 7, msgs_per_s_sustained => 1),
	row(workload => 'select1', clients => 1, tps_sustained => 6, msgs_per_s_sustained => 0),
], 15));
is($sel->{append_small}{32}{msgs_per_s_sustained}, 200, 'of three quiet attempts, the median is reported, not the best');
is($sel->{append_small}{32}{attempts} . '/' . $sel->{append_small}{32}{attempts_quiet}, '3/3', 'with the counts of attempts');
is($sel->{plain_sync}{32}{msgs_per_s_sustained}, 100, 'of two, the lower');
is($sel->{plain_async}{32}{msgs_per_s_sustained}, 100,
	'noisy attempts (other load above 15 %) are left out; 15 % exactly is quiet');
is($sel->{plain_async}{32}{attempts_quiet}, 2, 'two of four quiet');
is($sel->{mix}{32}{msgs_per_s_sustained}, 20, 'if none is quiet, the median of all');
is($sel->{mix}{32}{attempts_quiet}, 0, 'and none counted quiet');
is($sel->{select1}{1}{tps_sustained}, 6, 'workloads other than append_* and plain* go by transactions/s');
$sel = index_results(select_attempts([
	map { row(workload => $_->[0], clients => 32, tps_sustained => $_->[1], msgs_per_s_sustained => $_->[2]) }
	  [ 'plain_mix', 10, 300 ], [ 'plain_mix', 30, 100 ], [ 'plain_mix', 20, 200 ],
	  [ 'plain_cold_replay', 10, 300 ], [ 'plain_cold_replay', 30, 100 ], [ 'plain_cold_replay', 20, 200 ] ], 15));
is($sel->{plain_mix}{32}{tps_sustained}, 20, 'plain_mix, the baseline of mix, goes by transactions/s');
is($sel->{plain_cold_replay}{32}{tps_sustained}, 20, 'plain_cold_replay, the baseline of cold_replay, too');
is_deeply(noisy_keys([ m_row('mix', 32, 1, 40), m_row('mix', 32, 1, 16), m_row('plain_sync', 1, 1, 40),
	m_row('plain_sync', 1, 1, 3), m_row('mix', 1, 1, 99) ], 15), [ 'mix:32', 'mix:1' ],
	'the measurements without a quiet attempt are measured again');

# --- ratios and verdicts
is(ratio(3000, 1000), '3.00', 'ratio with two decimals');
is(ratio(1, 0), '0.00', 'ratio to nothing');
is(verdict('3.00', 3), 'MET', 'a goal reached exactly is MET');
is(verdict('2.99', 3), 'MISSED', 'below it MISSED');

# --- the goals
sub goal_of
{
	my ($g, $re) = @_;
	my @m = grep { $_->[0] =~ $re } @$g;
	die "no goal matching $re" unless @m == 1;
	return $m[0];
}

my @full = (
	m_row('append_small', 32, 3000), m_row('plain_sync', 32, 1000), m_row('plain_async', 32, 2001),
	m_row('append_small', 1, 9000, 0, lat_p50_ms => '0.200'),
	m_row('append_pipelined', 30, 16000, 0, tps_raw => 3200), m_row('plain_pipelined', 30, 5360),
	m_row('append_100k', 32, 2400),
	row(workload => 'mix', clients => 32, tps_sustained => 2000, msgs_per_s_sustained => 1600),
	row(workload => 'plain_mix', clients => 32, tps_sustained => 1000, msgs_per_s_sustained => 800),
	row(workload => 'cold_replay', clients => 32, tps_sustained => 900),
	row(workload => 'plain_cold_replay', clients => 32, tps_sustained => 1000),
	row(workload => 'turn', clients => 32, tps_sustained => 4000, msgs_per_s_sustained => 8000, tps_raw => 4001),
	row(workload => 'turn', clients => 1, tps_sustained => 3000, lat_p50_ms => '0.600'));
my %ctx = (FDATASYNC_US => 100, WORKLOADS => 'append_small turn', TURNS => 1, MOCK_RPS => 100000);
my $g = goals(index_results(select_attempts(\@full, 15)), \%ctx);
is_deeply(goal_of($g, qr/>= 3x the one-statement durable/), [ 'append_small at 32 clients >= 3x the one-statement durable insert (plain_sync)', '3000 vs 1000 msg/s = 3.00x', 'MET' ],
	'append_small 3.00x the durable insert: MET');
is(goal_of($g, qr/1.5x/)->[1], '3000 vs 2001 msg/s = 1.50x', 'append_small / plain_async = 1.4993 prints as 1.50x');
is(goal_of($g, qr/1.5x/)->[2], 'MET', 'and the verdict follows what is printed');
is_deeply([ @{ goal_of($g, qr/p50 <= 2x fdatasync/) }[ 1, 2 ] ], [ 'p50 0.200 ms, limit 0.200 ms', 'MET' ],
	'p50 equal to twice the fdatasync: MET');
is(goal_of($g, qr/3x the pipelined/)->[2], 'MISSED', 'append_pipelined 2.99x the pipelined insert: MISSED');
is(goal_of($g, qr/16,000/)->[2], 'MET', '16,000 msg/s exactly: MET');
is_deeply([ @{ goal_of($g, qr/append_100k/) }[ 1, 2 ] ], [ '2400 vs 3000 msg/s = 0.80x', 'MET' ],
	'append_100k 0.80x append_small: MET');
is_deeply(goal_of($g, qr/^mix at 32/), [ 'mix at 32 clients >= 2x its plain counterpart (plain_mix: 80 % the one-statement durable insert, 20 % a read of the last 50 messages)', '2000 vs 1000 tps = 2.00x', 'MET' ],
	'mix 2.00x plain_mix in transactions/s: MET');
is_deeply([ @{ goal_of($g, qr/^cold_replay/) }[ 1, 2 ] ], [ '900 vs 1000 tps = 0.90x', 'MET' ],
	'cold_replay 0.90x plain_cold_replay: MET');
is(goal_of($g, qr/^turn at 32/)->[2], 'MET', 'turn 4,000 turns/s at 32: MET');
is_deeply([ @{ goal_of($g, qr/^turn at 1 client/) }[ 1, 2 ] ], [ 'p50 0.600 ms vs 0.200 ms = 3.00x', 'MET' ],
	'turn p50 3.00x an append: MET');
ok(!grep({ $_->[0] =~ /^turn_last/ } @$g), 'no turn_last goal when turn_last was not asked for');
is(goal_of($g, qr/every turn answered/)->[2], 'MET', 'every turn answered');
is_deeply([ @{ goal_of($g, qr/psycopg/) }[ 1, 2 ] ], [ 'not measured', '-' ], 'the driver goal without a driver run');
is_deeply([ @{ goal_of($g, qr/RSS/) }[ 1, 2 ] ], [ 'not measured (--rss-run)', '-' ], 'the RSS goal without --rss-run');

$full[0] = m_row('append_small', 32, 2990);
$full[3] = m_row('append_small', 1, 9000, 0, lat_p50_ms => '0.201');
$full[6] = m_row('append_100k', 32, 2360);
$full[7] = row(workload => 'mix', clients => 32, tps_sustained => 1990, msgs_per_s_sustained => 5000);
$full[9] = row(workload => 'cold_replay', clients => 32, tps_sustained => 894);
push @full, row(workload => 'turn', clients => 32, failed => 1);
$g = goals(index_results(select_attempts(\@full, 15)),
	{ %ctx, driver => { depth => 100, rounds => 3, one => 1000, pipeline => 4990, ratio => '4.99', verdict => 'MISSED' } });
is_deeply([ @{ goal_of($g, qr/>= 3x the one-statement durable/) }[ 1, 2 ] ], [ '2990 vs 1000 msg/s = 2.99x', 'MISSED' ],
	'append_small 2.99x the durable insert: MISSED');
is(goal_of($g, qr/p50 <= 2x fdatasync/)->[2], 'MISSED', 'p50 above twice the fdatasync: MISSED');
is(goal_of($g, qr/append_100k/)->[2], 'MISSED', 'append_100k 0.79x: MISSED');
is_deeply([ @{ goal_of($g, qr/^mix at 32/) }[ 1, 2 ] ], [ '1990 vs 1000 tps = 1.99x', 'MISSED' ],
	'mix 1.99x plain_mix: MISSED (transactions/s, whatever the msg/s)');
is_deeply([ @{ goal_of($g, qr/^cold_replay/) }[ 1, 2 ] ], [ '894 vs 1000 tps = 0.89x', 'MISSED' ],
	'cold_replay 0.894x prints as 0.89x: MISSED');
is(goal_of($g, qr/every turn answered/)->[2], 'MISSED', 'a failed turn transaction: MISSED');
is_deeply([ @{ goal_of($g, qr/psycopg/) }[ 1, 2 ] ], [ '4990 vs 1000 appends/s = 4.99x (medians of 3 rounds)', 'MISSED' ],
	'the driver goal from its summary');
$g = goals(index_results(select_attempts([ grep { $_->{workload} !~ /^plain_(mix|cold_replay)$/ } @full ], 15)), \%ctx);
is_deeply([ @{ goal_of($g, qr/^mix at 32/) }[ 1, 2 ] ], [ 'not measured', '-' ], 'mix without plain_mix: not measured');
is_deeply([ @{ goal_of($g, qr/^cold_replay/) }[ 1, 2 ] ], [ 'not measured', '-' ], 'cold_replay without plain_cold_replay: not measured');
$g = goals(index_results(select_attempts([ grep { $_->{workload} !~ /^(mix|cold_replay)$/ } @full ], 15)), \%ctx);
is_deeply([ @{ goal_of($g, qr/^mix at 32/) }[ 1, 2 ] ], [ 'not measured', '-' ], 'plain_mix without mix: not measured');
is_deeply([ @{ goal_of($g, qr/^cold_replay/) }[ 1, 2 ] ], [ 'not measured', '-' ], 'plain_cold_replay without cold_replay: not measured');
$g = goals(index_results(select_attempts([ @full,
	row(workload => 'mix', clients => 1, tps_sustained => 3000), row(workload => 'plain_mix', clients => 1, tps_sustained => 1000) ], 15)), \%ctx);
is(goal_of($g, qr/^mix at 32/)->[1], '1990 vs 1000 tps = 1.99x', 'the mix goal is judged at 32 clients, not 1');

$g = goals(index_results([]), { FDATASYNC_US => 0, WORKLOADS => '', DRIVER_SKIPPED => 'no psycopg' });
is(scalar(grep { $_->[2] eq '-' } @$g), scalar(@$g), 'with no data every goal is "not measured", verdict "-"');
is(goal_of($g, qr/psycopg/)->[1], 'not measured (no psycopg)', 'a skipped driver run says why');
is(goal_of($g, qr/p50 <= 2x fdatasync/)->[1], 'not measured', 'no fdatasync figure: the latency goal is not measured');

# --- the results table
my $t = results_table(select_attempts([ m_row('append_small', 32, 3000, 1.5, tps_raw => 3000, flush_s => 0.01),
	m_row('plain_sync', 32, 1200), m_row('append_pipelined', 30, 6000), m_row('plain_pipelined', 30, 2000) ], 15));
like($t, qr/^\| append_small \| 32 \| 3000 \| 3000 \| 3000 \| 0\.01 \| .* \| - \| 2\.50 \| - \| - \|/m,
	'the table row of append_small: x plain_sync 2.50, no select1 or plain_async');
like($t, qr/^\| append_pipelined \| 30 \| .* \| 3\.00 \| [^|]* \| [^|]* \| [^|]* \| [^|]* \| [^|]* \| 1 \(1\) \|$/m,
	'append_pipelined against plain_pipelined: 3.00, one quiet attempt');
$t = results_table(select_attempts([ row(workload => 'mix', clients => 32, tps_sustained => 3000, msgs_per_s_sustained => 2400, messages => 1),
	row(workload => 'plain_mix', clients => 32, tps_sustained => 1200, msgs_per_s_sustained => 960, messages => 1),
	row(workload => 'plain_sync', clients => 32, msgs_per_s_sustained => 1500),
	row(workload => 'cold_replay', clients => 32, tps_sustained => 900), row(workload => 'plain_cold_replay', clients => 32, tps_sustained => 1000) ], 15));
like($t, qr/^\| mix \| 32 \| .* \| - \| 2\.00 \| - \| 2\.50 \| [^|]* \| [^|]* \| [^|]* \| [^|]* \| [^|]* \| 1 \(1\) \|$/m,
	'mix in tps against plain_mix (x own baseline 2.50) and against plain_sync\'s msg/s (2.00)');
like($t, qr/^\| cold_replay \| 32 \| .* \| - \| 0\.60 \| - \| 0\.90 \| [^|]* \| [^|]* \| [^|]* \| [^|]* \| [^|]* \| 1 \(1\) \|$/m,
	'cold_replay against plain_cold_replay: 0.90');
like($t, qr/^\| plain_mix \| 32 \| .* \| - \| - \| - \| - \| [^|]* \| [^|]* \| [^|]* \| [^|]* \| [^|]* \| 1 \(1\) \|$/m,
	'a baseline row has no ratios');

# --- reference ratios at 1 client
my $refs = references(index_results([ row(workload => 'mix', clients => 1, tps_sustained => 3000),
	row(workload => 'plain_mix', clients => 1, tps_sustained => 1000), row(workload => 'cold_replay', clients => 1, tps_sustained => 450),
	row(workload => 'plain_cold_replay', clients => 1, tps_sustained => 500), row(workload => 'mix', clients => 32, tps_sustained => 1) ]));
like($refs, qr/^- mix \/ plain_mix at 1 client: 3000 \/ 1000 tps = 3\.00x$/m, 'reference: mix / plain_mix at 1 client');
like($refs, qr/^- cold_replay \/ plain_cold_replay at 1 client: 450 \/ 500 tps = 0\.90x$/m, 'reference: cold_replay / plain_cold_replay at 1 client');
is(references(index_results([ row(workload => 'mix', clients => 1, tps_sustained => 3000) ])), '', 'no reference ratio without the baseline');
$refs = references(index_results([ row(workload => 'plain_null', clients => 32, tps_sustained => 2600, msgs_per_s_sustained => 2600),
	row(workload => 'plain_sync', clients => 32, msgs_per_s_sustained => 1300), row(workload => 'plain_async', clients => 32, msgs_per_s_sustained => 2000),
	row(workload => 'append_small', clients => 32, msgs_per_s_sustained => 1950) ]));
like($refs, qr/^- plain_null .* at 32 clients: 2600 tps; \/ plain_sync 1300 = 2\.00x; \/ plain_async 2000 = 1\.30x; append_small \/ plain_null = 1950 \/ 2600 = 0\.75x$/m,
	'reference: plain_null against the inserts, and append_small against it');
like(references(index_results([ row(workload => 'plain_null', clients => 32, tps_sustained => 2600) ])), qr/^- plain_null .*: 2600 tps$/m,
	'plain_null alone: its rate, no ratio');
like(references(index_results([ row(workload => 'plain_null_pipelined', clients => 30, msgs_per_s_sustained => 9000),
	row(workload => 'plain_pipelined', clients => 30, msgs_per_s_sustained => 4000),
	row(workload => 'append_pipelined', clients => 30, msgs_per_s_sustained => 6000) ])),
	qr/^- plain_null_pipelined .* at 30 clients: 9000 msg\/s; \/ plain_pipelined 4000 = 2\.25x; append_pipelined \/ plain_null_pipelined = 6000 \/ 9000 = 0\.67x$/m,
	'reference: plain_null_pipelined against plain_pipelined, and append_pipelined against it');

# --- the driver rounds
my @d = map {
	my ($r, $mode, $rate, $other) = @$_;
	{ round => $r, mode => $mode, depth => ($mode eq 'one' ? 1 : 100), appends => 100, seconds => 5, rate => $rate,
	  flush_s => 0, rate_sustained => $rate, fsyncs => 10, other_cpu_pct => $other }
} ([ 1, 'one', 1000, 0 ], [ 1, 'pipeline', 5000, 0 ], [ 2, 'one', 900, 0 ], [ 2, 'pipeline', 5200, 0 ],
	[ 3, 'one', 100, 60 ], [ 3, 'pipeline', 20000, 0 ]);
my $ds = driver_summary(\@d, 15);
is_deeply([ @$ds{qw(one pipeline ratio verdict rounds)} ], [ 950, 5100, '5.37', 'MET', 2 ],
	'driver: the medians over the quiet rounds (a round with a noisy run left out), 5.37x: MET');
$ds = driver_summary([ @d[ 0, 1 ] ], 15);
is_deeply([ @$ds{qw(ratio verdict)} ], [ '5.00', 'MET' ], 'driver 5.00x: MET');
$d[1]{rate_sustained} = 4990;
is(driver_summary([ @d[ 0, 1 ] ], 15)->{verdict}, 'MISSED', 'driver 4.99x: MISSED');
$d[1]{rate_sustained} = 4999;
is(driver_summary([ @d[ 0, 1 ] ], 15)->{verdict}, 'MET', 'driver 4.999x prints as 5.00x and is judged as printed: MET');
is(driver_summary([ $d[0] ], 15)->{ratio}, undef, 'no pipeline round: no ratio');
$ds = driver_summary([ @d[ 0, 1 ], { %{ $d[1] }, mode => 'executemany', rate_sustained => 12000 } ], 15);
is_deeply([ @$ds{qw(executemany executemany_ratio verdict)} ], [ 12000, '12.00', 'MET' ],
	'executemany is a reference ratio, the verdict stays the pipeline\'s');
$ds = driver_summary([ @d[ 0, 1 ], { %{ $d[1] }, mode => 'select', rate_sustained => 3000 } ], 15);
is_deeply([ @$ds{qw(select_ratio ratio verdict)} ], [ '3.00', '5.00', 'MET' ],
	'the select pipeline (the driver alone) is a reference too');

# --- idle waiters
my @ir = (
	{ round => 1, waiters => 0, msgs_per_s_sustained => 1000, tps_raw => 1000, other_cpu_pct => 0, fsyncs => 100, records_per_fsync => '' },
	{ round => 1, waiters => 5, msgs_per_s_sustained => 950, tps_raw => 950, other_cpu_pct => 0, fsyncs => 100, records_per_fsync => '',
	  waiting_before => '5/5', waiting_after => '5/5', same_backends => 1, returned => 0, waiter_vcsw => 0, waiter_cpu_s => '0.00' },
	{ round => 2, waiters => 0, msgs_per_s_sustained => 1000, tps_raw => 1000, other_cpu_pct => 0, fsyncs => 100, records_per_fsync => '' },
	{ round => 2, waiters => 5, msgs_per_s_sustained => 850, tps_raw => 850, other_cpu_pct => 0, fsyncs => 100, records_per_fsync => '',
	  waiting_before => '5/5', waiting_after => '5/5', same_backends => 1, returned => 0, waiter_vcsw => 0, waiter_cpu_s => '0.00' });
$_->{lat_p50_ms} = $_->{lat_p99_ms} = 1 for @ir;
my $is = idle_summary(\@ir, 5, 15);
is_deeply([ @$is{qw(without with ratio verdict)} ], [ 1000, 900, 0.9, 'MET' ], 'idle waiters: medians 900 / 1000 = 0.900: MET');
$ir[3]{returned} = 1;
is(idle_summary(\@ir, 5, 15)->{verdict}, 'INVALID', 'a waiter that returned makes the run INVALID');
$ir[3]{returned} = 0;
$ir[3]{msgs_per_s_sustained} = 848;
is(idle_summary(\@ir, 5, 15)->{verdict}, 'MISSED', 'idle waiters 0.899: MISSED');

# --- RSS
my @rss = map { { t_s => $_, writer_rss_kb => 100, writer_shmem_kb => 50, writer_priv_kb => ($_ > 50 ? 110 : 100),
	applier_rss_kb => 200, applier_shmem_kb => 100, applier_priv_kb => 100 } } 1 .. 60;
my $rs = rss_summary(\@rss, 60);
is_deeply([ $rs->{pct}{'writer private'}, $rs->{verdict} ], [ 10, 'MET' ], 'RSS +10.0%: MET');
$_->{writer_priv_kb} = 111 for grep { $_->{t_s} > 50 } @rss;
is(rss_summary(\@rss, 60)->{verdict}, 'MISSED', 'RSS +11.0%: MISSED');

# --- a whole report from a fixture result directory
my $dir = tempdir(CLEANUP => 1);
sub put
{
	my ($name, $text) = @_;
	open my $f, '>', "$dir/$name" or die "$dir/$name: $!";
	print $f $text;
	close $f;
}
put('context.env', join('', map { "$_\n" } 'TS=20261127-120000', 'QUICK=1', 'NPROC=2', 'CPU=test cpu', 'MEM=1 GiB',
	'DISK=/dev/x (/)', 'PGVER=postgres (PostgreSQL) 15', 'BUILT_FROM=git abc "quoted"', 'FDATASYNC_US=100',
	'SHMEM=1000', 'CLIENTS=1 32', 'TURN_CLIENTS=', 'DURATION=5', 'WARMUP=2', 'NSESSIONS=1000', 'NCOLD=50',
	'NMANY=100000', 'ATTEMPTS=3', 'RETRY_OTHER_PCT=15', 'WORKLOADS=append_small plain_sync', 'TURNS=0',
	'MOCK_RPS=', 'IDLE_WAITERS=0', 'IDLE_CLIENTS=32', 'RSS_SECONDS=60', 'DRIVER_SKIPPED=', 'AUTOVACUUM=on',
	'AUTOVACUUM_NAPTIME=1min'));
my @fix = (m_row('append_small', 32, 3300, 0), m_row('append_small', 32, 3000, 0), m_row('append_small', 32, 3600, 0),
	m_row('plain_sync', 32, 1000, 0), m_row('plain_sync', 32, 1100, 20), m_row('plain_sync', 32, 900, 0));
put('results-all-attempts.csv', join('', join(',', @head) . "\n",
	map { my $r = $_; join(',', map { $r->{$_} } @head) . "\n" } @fix));
put('table-stats.csv', "measurement,workload,clients,attempt,table,n_tup_ins,n_tup_upd,n_tup_hot_upd,n_tup_del,n_live_tup,n_dead_tup,last_autovacuum,last_autoanalyze,autovacuum_count,autoanalyze_count,ins_during,upd_during,del_during,autovacuums_during,autoanalyzes_during\n"
	  . "0,(after the setup),,,fleetlm.messages,10,0,0,0,10,0,,,0,0,,,,,\n"
	  . "1,append_small,32,1,fleetlm.messages,20,0,0,0,20,0,,,0,0,10,0,0,0,0\n");
put('driver.csv', "round,mode,depth,appends,seconds,rate,flush_s,rate_sustained,fsyncs,other_cpu_pct\n"
	  . "1,one,1,500,5.0,100.0,0.01,99.8,500,1.0\n1,pipeline,100,3000,5.0,600.0,0.02,597.6,40,2.0\n");
put('machine.txt', "date:        2026-11-27\n");
put('settings.txt', " name | value \n------+------\n fsync | on\n");
my $rc = system("perl $bench/report.pl $dir >$dir/out.txt 2>&1");
is($rc, 0, 'bench/report.pl writes a report') or diag(`cat $dir/out.txt`);
my (undef, $res) = read_csv("$dir/results.csv");
is_deeply([ map { "$_->{workload}:$_->{msgs_per_s_sustained}:$_->{attempts}:$_->{attempts_quiet}" } @$res ],
	[ 'append_small:3300:3:3', 'plain_sync:900:3:2' ], 'results.csv: the median attempt of each, with the counts');
open my $sf, '<', "$dir/summary.md" or die $!;
my $summary = do { local $/; <$sf> };
close $sf;
like($summary, qr/^\| append_small at 32 clients >= 3x the one-statement durable insert \(plain_sync\) \| 3300 vs 900 msg\/s = 3\.67x \| MET \|$/m,
	'summary.md: the goal from the medians');
like($summary, qr/^\| psycopg 3 pipeline of 100 appends >= 5x the same driver one by one \(1 connection\) \| 598 vs 100 appends\/s = 5\.99x \(medians of 1 rounds\) \| MET \|$/m,
	'summary.md: the driver goal');
like($summary, qr/^\| append_100k .* \| not measured \| - \|$/m, 'summary.md: a goal without data');
like($summary, qr/^\| mix at 32 clients >= 2x .* \| not measured \| - \|$/m, 'summary.md: the mix goal without data');
like($summary, qr/^\| cold_replay of 1,000 messages at 32 clients >= 0\.9x .* \| not measured \| - \|$/m, 'summary.md: the cold_replay goal without data');
like($summary, qr/## Table statistics/, 'summary.md: the table statistics');
open my $jf, '<', "$dir/results.json" or die $!;
my $json = eval { decode_json(do { local $/; <$jf> }) };
close $jf;
ok($json, 'results.json is JSON') or diag($@);
is($json->{machine}{fleetlm}, 'git abc "quoted"', 'results.json: strings escaped');
is(scalar @{ $json->{runs} }, 2, 'results.json: the two selected runs');
is($json->{settings}{fsync}, 'on', 'results.json: the settings');
is(scalar(grep { $_->{verdict} eq 'MET' } @{ $json->{goals} }), 2, 'results.json: the goals with their verdicts');
is(`perl $bench/report.pl noisy $dir`, '', 'report.pl noisy: every measurement had a quiet attempt');

done_testing();

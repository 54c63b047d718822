#!/usr/bin/perl
#-------------------------------------------------------------------------
#
# report.pl
#	  The report of a bench/run result directory: the median attempts, the
#	  ratios, the goals and their verdicts, summary.md and results.json.
#
#	report.pl DIR              write DIR/results.csv, table.md, goals.md,
#	                           references.md, idle-waiters.md, summary.md,
#	                           results.json from the raw files bench/run
#	                           wrote there (context.env,
#	                           results-all-attempts.csv, table-stats.csv,
#	                           and, if they were measured, idle-waiters.csv,
#	                           rss.csv, driver.csv)
#	report.pl noisy DIR        print "workload:clients" of the measurements
#	                           of DIR/results-all-attempts.csv that have no
#	                           quiet attempt (bench/run measures them again)
#
# The rules are in bench/lib/FleetlmBench/Report.pm.
#
# bench/report.pl
#
#-------------------------------------------------------------------------
use strict;
use warnings;
use FindBin;
use lib "$FindBin::RealBin/lib";
use FleetlmBench::Report qw(read_csv read_context select_attempts noisy_keys
  index_results goals results_table references idle_summary rss_summary
  driver_summary table_stats_tables turn_table json_report goals_markdown);

sub slurp
{
	my ($path) = @_;
	open my $fh, '<', $path or return '';
	local $/;
	my $s = <$fh>;
	close $fh;
	return $s;
}

sub spew
{
	my ($path, $s) = @_;
	open my $fh, '>', $path or die "$path: $!";
	print $fh $s;
	close $fh or die "$path: $!";
	return;
}

if (@ARGV == 2 && $ARGV[0] eq 'noisy')
{
	my $ctx = read_context("$ARGV[1]/context.env");
	my (undef, $rows) = read_csv("$ARGV[1]/results-all-attempts.csv");
	print "$_\n" for @{ noisy_keys($rows, $ctx->{RETRY_OTHER_PCT}) };
	exit 0;
}
die "usage: report.pl DIR | report.pl noisy DIR\n" unless @ARGV == 1;
my $out = $ARGV[0];
my $ctx = read_context("$out/context.env");
my $lim = $ctx->{RETRY_OTHER_PCT};

# the median attempts
my ($head, $all) = read_csv("$out/results-all-attempts.csv");
my $runs = select_attempts($all, $lim);
my @rhead = (@$head, 'attempts', 'attempts_quiet');
spew("$out/results.csv",
	join('', join(',', @rhead) . "\n", map { my $r = $_; join(',', map { $r->{$_} } @rhead) . "\n" } @$runs));
my $ix = index_results($runs);

# the special runs
my ($ihead, $irows) = read_csv("$out/idle-waiters.csv");
if (@$irows)
{
	$ctx->{idle} = idle_summary($irows, $ctx->{IDLE_WAITERS}, $lim);
	spew("$out/idle-waiters.md", $ctx->{idle}{text});
}
my (undef, $rss) = read_csv("$out/rss.csv");
if (@$rss)
{
	$ctx->{rss} = rss_summary($rss, $ctx->{RSS_SECONDS});
	spew("$out/rss.txt", $ctx->{rss}{text});
}
my ($dhead, $drows) = read_csv("$out/driver.csv");
$ctx->{driver} = driver_summary($drows, $lim) if @$drows;

my $table = results_table($runs);
my $goals = goals($ix, $ctx);
my $gmd = goals_markdown($goals);
my $refs = references($ix);
spew("$out/table.md", $table);
spew("$out/goals.md", $gmd);
spew("$out/references.md", $refs);

# summary.md
my ($thead, $trows) = read_csv("$out/table-stats.csv");
my $s = "# fleetlm bench $ctx->{TS}" . ($ctx->{QUICK} ? ' (--quick)' : '') . "\n\n```\n";
$s .= slurp("$out/machine.txt");
$s .= 'run:         bench/run ' . ($ctx->{QUICK} ? '--quick ' : '') . "clients=\"$ctx->{CLIENTS}\""
  . ($ctx->{TURNS} ? " turn_clients=\"$ctx->{TURN_CLIENTS}\"" : '')
  . " duration=$ctx->{DURATION}s warmup=$ctx->{WARMUP}s nsessions=$ctx->{NSESSIONS} ncold=$ctx->{NCOLD} nmany=$ctx->{NMANY}; pgbench -n -M prepared -j 2\n";
$s .= "shmem_size:  $ctx->{SHMEM} bytes\n```\n\n$table\n";
$s .= "Ratios (x ...) compare sustained rates at the same client count: msg/s for append_* and the plain inserts, transactions/s otherwise (mix, cold_replay and their baselines plain_mix, plain_cold_replay included); append_pipelined at 30 clients is compared with the 32-client baselines. x own baseline: append_pipelined / plain_pipelined, append_batch5 / plain_batch5, mix / plain_mix, cold_replay / plain_cold_replay. *other load %*: CPU time used on the machine by processes other than this server, pgbench and the kernel threads during the measurement, in % of all CPUs; a measurement is quiet if it is at most $lim%; a workload and client count without a quiet attempt was measured once more at the end. Each row is the median attempt by rate among the quiet attempts (among all if none was quiet; of two, the lower), $ctx->{ATTEMPTS} attempt(s) per point asked for (--attempts); results-all-attempts.csv has all "
  . scalar(@$all) . ".\n";
$s .= "\n## Goals\n\n$gmd";
$s .= "\nReference ratios, not goals:\n\n$refs" if $refs ne '';
$s .= "\n## Table statistics (pg_stat_user_tables; autovacuum $ctx->{AUTOVACUUM}, autovacuum_naptime $ctx->{AUTOVACUUM_NAPTIME})\n\n"
  . "After each measurement: rows inserted (updated, for the session tables) during it / n_live_tup / n_dead_tup / autovacuum_count (+ during it) and autoanalyze_count (+ during it). The backends of pgbench report when they exit, the applier before it sleeps. table-stats.csv has every field, with last_autovacuum and last_autoanalyze.\n\n"
  . table_stats_tables($trows);
$s .= "\n```\n$ctx->{rss}{text}```\n" if $ctx->{rss} && $ctx->{rss}{text};
if ($ctx->{TURNS})
{
	my $mock_last = (split /\n/, slurp("$out/mock-alone.txt"))[-1] // '';
	$s .= "\n## Agent turns\n\n"
	  . "One transaction = one turn: fleetlm.append of the user's message, then fleetlm.wait_for_messages until the agent's reply is durable (2 messages). Each client owns one session. The agent is bench/mock_agent on 127.0.0.1 (instant JSONL reply), registered with debounce 0 and max_concurrency 64; fleetlm.dispatch_max_inflight = $ctx->{INFLIGHT}. turn: agent bench-agent, history_mode 'tail', history_limit 50; turn_last: bench-agent-last, history_mode 'last'. turns started/completed/turns_failed/attempts retried: fleetlm.stat deltas over the measurement. pgbench 15 counts only serialization and deadlock errors as failed transactions; a turn without a reply in 10 s (a division by zero) aborts its client instead. Dispatcher CPU: utime + stime of the fleetlm dispatcher worker, in % of one CPU (100 = one core busy all the time); mock CPU: the mock agent's, in % of all CPUs, like other load (the mock's CPU is not counted as other load).\n\n"
	  . "mock alone: $ctx->{MOCK_RPS} req/s (mock_agent --load 127.0.0.1:PORT -c 32 -d 5, one thread each, measured before the turn workloads: $mock_last).\n\n"
	  . turn_table($runs, $ix);
	$s .= "\nThe server logged WARNING or worse during some measurements: log-problems.txt.\n"
	  if -s "$out/log-problems.txt";
}
if ($ctx->{idle})
{
	$s .= "\n## Idle waiters: append_small at $ctx->{IDLE_CLIENTS} clients without and with $ctx->{IDLE_WAITERS} idle long-pollers\n\n"
	  . "Alternated on the same server, $ctx->{DURATION}s each. With: $ctx->{IDLE_WAITERS} extra connections, each in fleetlm.wait_for_messages('idle-<i>', 1, '$ctx->{IDLE_TIMEOUT_S} seconds') on its own session that nothing appends to, all waiting (pg_stat_activity) before and still waiting after the timed run. Wake-ups: voluntary context switches of the waiter backends during the run; flush rounds: fleetlm.stat.fsyncs delta. idle-waiters.csv has every column.\n\n"
	  . $ctx->{idle}{text};
}
if ($ctx->{driver} && $ctx->{driver}{text})
{
	my $d = $ctx->{driver};
	$s .= "\n## Driver pipeline (psycopg 3)\n\n"
	  . "bench/driver_pipeline.py, one connection (autocommit), appending append_small's message to random sessions bench-1..$ctx->{NSESSIONS}, $ctx->{DURATION}s per run, the modes alternated in each round: one = conn.execute(...).fetchone() per append; pipeline = $d->{depth} cursor.execute(...) in `with conn.pipeline():` (one Sync), then the seqs fetched; references: executemany = cursor.executemany(..., $d->{depth} parameter sets, returning=True), select = the pipeline of $d->{depth} with `SELECT length(\$1::text) + length(\$2::text)` instead of the append (what the driver alone costs). Sustained: appends / (seconds + the applier's drain after the round). fsync rounds: fleetlm.stat.fsyncs delta. The verdict compares the medians of the sustained rates over the quiet rounds (all rounds if fewer than 2 are quiet).\n\n"
	  . $d->{text};
	$s .= sprintf("\nmedians: one by one %.0f, pipeline of %d %.0f appends/s: %sx (goal >= 5: %s)\n",
		$d->{one}, $d->{depth}, $d->{pipeline}, $d->{ratio}, $d->{verdict}) if defined $d->{ratio};
	$s .= sprintf("\nreference, not the goal: executemany of %d (psycopg's own batch) %.0f appends/s, %sx one by one\n",
		$d->{depth}, $d->{executemany}, $d->{executemany_ratio}) if defined $d->{executemany_ratio};
	$s .= sprintf("\nreference, not the goal: the same pipeline of %d with a SELECT of the two parameters instead of the append (the driver's own ceiling) %.0f statements/s, %sx one append by one\n",
		$d->{depth}, $d->{select}, $d->{select_ratio}) if defined $d->{select_ratio};
}
elsif ($ctx->{DRIVER_SKIPPED})
{
	$s .= "\n## Driver pipeline (psycopg 3)\n\nNot measured: $ctx->{DRIVER_SKIPPED}.\n";
}
spew("$out/summary.md", $s);

# results.json
my @settings;
for my $line (split /\n/, slurp("$out/settings.txt"))
{
	next unless $line =~ /\|/;
	my ($n, $v) = map { s/^\s+|\s+$//gr } (split /\|/, $line)[ 0, 1 ];
	push @settings, [ $n, $v // '' ] unless $n eq 'name';
}
spew("$out/results.json",
	json_report(
		ctx => $ctx, settings => \@settings, head => \@rhead, runs => $runs,
		idle_head => $ihead, idle_rows => $irows, driver_head => $dhead, driver_rows => $drows,
		tstats_head => $thead, tstats_rows => $trows, goals => $goals));

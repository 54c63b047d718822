#-------------------------------------------------------------------------
#
# FleetlmBench/Report.pm
#	  The report and goal logic of bench/run: which attempt of a
#	  measurement is reported, the ratios, the goals and their verdicts, the
#	  Markdown tables, the summaries of the idle-waiter, RSS and driver runs,
#	  and results.json.
#
# bench/run measures and writes raw CSV files into its result directory;
# bench/report.pl reads them with this module and writes the report.  The
# functions below take and return plain Perl data (rows are hashes keyed
# by the CSV header), so test/t/040_bench_report.pl can feed them fixture
# data.
#
# Rules:
#	- A measurement is quiet if other load on the machine (other_cpu_pct)
#	  was at most the limit (15 % by default).  Per workload and client
#	  count, the reported attempt is the median by rate among the quiet
#	  attempts, or among all if none was quiet; of an even number, the lower
#	  of the two middle ones (a real attempt, never an average).
#	- The rate is msg/s sustained for append_* and the plain inserts
#	  (plain*: messages or rows; the backlog's drain included),
#	  transactions/s sustained otherwise, plain_mix and plain_cold_replay
#	  (the baselines of mix and cold_replay) included.
#	- A goal "X >= G" is MET when X >= G, with X as printed (two decimals for
#	  ratios); "X <= G" likewise.  A goal whose data is missing is "not
#	  measured", verdict "-".
#
# bench/lib/FleetlmBench/Report.pm
#
#-------------------------------------------------------------------------
package FleetlmBench::Report;

use strict;
use warnings;

use Exporter 'import';
our @EXPORT_OK = qw(read_csv read_context is_baseline rate median
  select_attempts noisy_keys index_results ratio verdict goals
  results_table references idle_summary rss_summary driver_summary
  table_stats_tables turn_table json_report goals_markdown);

# Read a CSV file (no quoted fields) into [ header names ], [ row hashes ].
# A missing or empty file gives two empty lists.
sub read_csv
{
	my ($path) = @_;
	my (@head, @rows);
	open my $fh, '<', $path or return ([], []);
	while (my $line = <$fh>)
	{
		chomp $line;
		next if $line eq '';
		my @f = split /,/, $line, -1;
		if (!@head)
		{
			@head = @f;
			next;
		}
		my %r;
		@r{@head} = map { defined $_ ? $_ : '' } @f[ 0 .. $#head ];
		push @rows, \%r;
	}
	close $fh;
	return (\@head, \@rows);
}

# Read bench/run's context.env: NAME=value lines.
sub read_context
{
	my ($path) = @_;
	my %c;
	open my $fh, '<', $path or die "$path: $!";
	while (my $line = <$fh>)
	{
		chomp $line;
		$c{$1} = $2 if $line =~ /^([A-Z0-9_]+)=(.*)$/;
	}
	close $fh;
	return \%c;
}

# select1 and the plain* workloads (the plain inserts, plain_mix,
# plain_cold_replay) are baselines, everything else is fleetlm.
sub is_baseline
{
	my ($w) = @_;
	return $w =~ /^(select1|plain.*)$/ ? 1 : 0;
}

# The rate a row is compared by: msg/s for append_* and the plain inserts,
# tps otherwise, plain_mix and plain_cold_replay included (sustained, drain
# included).
sub by_msgs
{
	my ($w) = @_;
	return ($w =~ /^(append_|plain)/ && $w !~ /^plain_(mix|cold_replay)$/) ? 1 : 0;
}

sub rate
{
	my ($row) = @_;
	my $col = by_msgs($row->{workload}) ? 'msgs_per_s_sustained' : 'tps_sustained';
	my $v = $row->{$col};
	return (defined $v && $v ne '') ? $v + 0 : 0;
}

# The median of a list of numbers (the mean of the two middle ones for an
# even count); undef for an empty list.
sub median
{
	my @v = sort { $a <=> $b } @_;
	return undef unless @v;
	return $v[ $#v / 2 ] if @v % 2;
	return ($v[ @v / 2 - 1 ] + $v[ @v / 2 ]) / 2;
}

sub is_quiet
{
	my ($row, $limit) = @_;
	my $o = $row->{other_cpu_pct};
	return ((defined $o && $o ne '' ? $o : 0) <= $limit) ? 1 : 0;
}

# Group rows by workload and client count, in the order first seen.
sub group_attempts
{
	my ($rows) = @_;
	my (%by, @order);
	for my $r (@$rows)
	{
		my $k = "$r->{workload}:$r->{clients}";
		push @order, $k unless $by{$k};
		push @{ $by{$k} }, $r;
	}
	return (\%by, \@order);
}

# One row per workload and client count: the median attempt by rate among
# the quiet ones (all if none is quiet; of two middle ones the lower),
# with "attempts" and "attempts_quiet" added.
sub select_attempts
{
	my ($rows, $limit) = @_;
	my ($by, $order) = group_attempts($rows);
	my @out;
	for my $k (@$order)
	{
		my @all = @{ $by->{$k} };
		my @quiet = grep { is_quiet($_, $limit) } @all;
		my @cand = sort { rate($a) <=> rate($b) } (@quiet ? @quiet : @all);
		my %pick = %{ $cand[ int((@cand + 1) / 2) - 1 ] };
		$pick{attempts} = scalar @all;
		$pick{attempts_quiet} = scalar @quiet;
		push @out, \%pick;
	}
	return \@out;
}

# "workload:clients" of the measurements without a quiet attempt.
sub noisy_keys
{
	my ($rows, $limit) = @_;
	my ($by, $order) = group_attempts($rows);
	return [ grep { !grep { is_quiet($_, $limit) } @{ $by->{$_} } } @$order ];
}

# {workload}{clients} => row
sub index_results
{
	my ($rows) = @_;
	my %ix;
	$ix{ $_->{workload} }{ $_->{clients} } = $_ for @$rows;
	return \%ix;
}

# a / b with two decimals, "0.00" if b is not above 0.
sub ratio
{
	my ($a, $b) = @_;
	return sprintf('%.2f', ($b > 0 ? $a / $b : 0));
}

# MET if value >= goal, else MISSED.
sub verdict
{
	my ($value, $goal) = @_;
	return ($value >= $goal) ? 'MET' : 'MISSED';
}

sub get
{
	my ($ix, $w, $c, $col) = @_;
	my $r = $ix->{$w}{$c};
	return undef unless $r && defined $r->{$col} && $r->{$col} ne '';
	return $r->{$col};
}

sub listed
{
	my ($ctx, $w) = @_;
	return (' ' . ($ctx->{WORKLOADS} // '') . ' ') =~ / \Q$w\E / ? 1 : 0;
}

# A ratio goal "a / b >= min": [ goal, measured, verdict ].
sub ratio_goal
{
	my ($text, $a, $b, $min, $unit) = @_;
	return [ $text, 'not measured', '-' ] unless defined $a && defined $b;
	my $r = ratio($a, $b);
	return [ $text, "$a vs $b $unit = ${r}x", verdict($r, $min) ];
}

# The goals table: a list of [ goal, measured, verdict ].  $ix: the
# selected results (index_results); $ctx: bench/run's context (fdatasync,
# workloads, mock rate) plus the summaries of the special runs: idle
# (idle_summary), rss (rss_summary), driver (driver_summary).
sub goals
{
	my ($ix, $ctx) = @_;
	my @g;
	my $a32 = get($ix, 'append_small', 32, 'msgs_per_s_sustained');
	push @g, ratio_goal('append_small at 32 clients >= 3x the one-statement durable insert (plain_sync)',
		$a32, get($ix, 'plain_sync', 32, 'msgs_per_s_sustained'), 3, 'msg/s');
	push @g, ratio_goal('append_small at 32 clients >= 1.5x the one-statement insert with synchronous_commit=off (plain_async)',
		$a32, get($ix, 'plain_async', 32, 'msgs_per_s_sustained'), 1.5, 'msg/s');

	my $p1 = get($ix, 'append_small', 1, 'lat_p50_ms');
	my $fd = $ctx->{FDATASYNC_US} // 0;
	if (defined $p1 && $fd > 0)
	{
		my $lim = sprintf('%.3f', 2 * $fd / 1000);
		push @g, [ "append_small at 1 client p50 <= 2x fdatasync ($fd us)", "p50 $p1 ms, limit $lim ms", verdict($lim, $p1) ];
	}
	else
	{
		push @g, [ 'append_small at 1 client p50 <= 2x fdatasync', 'not measured', '-' ];
	}

	my $pp = get($ix, 'append_pipelined', 30, 'msgs_per_s_sustained');
	push @g, ratio_goal('append_pipelined 30 clients x 5 in flight >= 3x the pipelined durable insert (plain_pipelined, 30 x 5)',
		$pp, get($ix, 'plain_pipelined', 30, 'msgs_per_s_sustained'), 3, 'msg/s');
	if (defined $pp)
	{
		push @g, [ 'append_pipelined 30 clients x 5 in flight >= 16,000 msg/s',
			"$pp msg/s sustained (" . get($ix, 'append_pipelined', 30, 'tps_raw') . ' pipelines/s raw)', verdict($pp, 16000) ];
	}
	else
	{
		push @g, [ 'append_pipelined 30 x 5 >= 16,000 msg/s', 'not measured', '-' ];
	}

	push @g, ratio_goal('append_100k at 32 clients (100,000 sessions) >= 0.8x append_small at 32 clients (1,000 sessions)',
		get($ix, 'append_100k', 32, 'msgs_per_s_sustained'), $a32, 0.8, 'msg/s');

	push @g, ratio_goal('mix at 32 clients >= 2x its plain counterpart (plain_mix: 80 % the one-statement durable insert, 20 % a read of the last 50 messages)',
		get($ix, 'mix', 32, 'tps_sustained'), get($ix, 'plain_mix', 32, 'tps_sustained'), 2, 'tps');
	push @g, ratio_goal('cold_replay of 1,000 messages at 32 clients >= 0.9x a plain SELECT ... ORDER BY seq LIMIT 1000 of the same rows (plain_cold_replay)',
		get($ix, 'cold_replay', 32, 'tps_sustained'), get($ix, 'plain_cold_replay', 32, 'tps_sustained'), 0.9, 'tps');

	my $d = $ctx->{driver};
	if ($d && defined $d->{ratio})
	{
		push @g, [ "psycopg 3 pipeline of $d->{depth} appends >= 5x the same driver one by one (1 connection)",
			sprintf('%.0f vs %.0f appends/s = %sx (medians of %d rounds)', $d->{pipeline}, $d->{one}, $d->{ratio}, $d->{rounds}),
			$d->{verdict} ];
	}
	else
	{
		my $why = $ctx->{DRIVER_SKIPPED} ? "not measured ($ctx->{DRIVER_SKIPPED})" : 'not measured';
		push @g, [ 'psycopg 3 pipeline of 100 appends >= 5x the same driver one by one', $why, '-' ];
	}

	for my $w ('turn', 'turn_last')
	{
		next unless listed($ctx, $w);
		my $hm = $w eq 'turn' ? 'history tail 50' : "history 'last'";
		my $t32 = get($ix, $w, 32, 'tps_sustained');
		if (defined $t32)
		{
			push @g, [ "$w at 32 clients >= 4,000 turns/s (8,000 msg/s; $hm)",
				"$t32 turns/s sustained, " . get($ix, $w, 32, 'msgs_per_s_sustained') . ' msg/s ('
				  . get($ix, $w, 32, 'tps_raw') . ' turns/s raw); mock alone: ' . ($ctx->{MOCK_RPS} // '') . ' req/s',
				verdict($t32, 4000) ];
		}
		else
		{
			push @g, [ "$w at 32 clients >= 4,000 turns/s ($hm)", 'not measured', '-' ];
		}
		my $tp1 = get($ix, $w, 1, 'lat_p50_ms');
		if (defined $tp1 && defined $p1)
		{
			my $r = sprintf('%.2f', ($p1 > 0 ? $tp1 / $p1 : 0));
			push @g, [ "$w at 1 client p50 <= 3x append_small p50 at 1 client ($hm)", "p50 $tp1 ms vs $p1 ms = ${r}x", verdict(3, $r) ];
		}
		else
		{
			push @g, [ "$w at 1 client p50 <= 3x append_small p50 at 1 client",
				'not measured' . (defined $p1 ? '' : ' (append_small at 1 client not run)'), '-' ];
		}
	}
	if ($ctx->{TURNS})
	{
		my ($tf, $pf, $ab) = (0, 0, 0);
		for my $w ('turn', 'turn_last')
		{
			for my $r (values %{ $ix->{$w} || {} })
			{
				$tf += $r->{turns_failed} || 0;
				$pf += $r->{failed} || 0;
				$ab += $r->{aborted_clients} || 0;
			}
		}
		push @g, [ 'every turn answered: fleetlm.stat.turns_failed 0, no failed transaction or aborted client (turn, turn_last)',
			"turns_failed $tf, pgbench failed $pf, clients aborted $ab", ($tf + $pf + $ab == 0 ? 'MET' : 'MISSED') ];
	}
	my $idle = $ctx->{idle};
	if ($idle && defined $idle->{verdict})
	{
		push @g, [ "append_small at $ctx->{IDLE_CLIENTS} clients with $ctx->{IDLE_WAITERS} idle waiters >= 0.9x without (medians of alternated runs)",
			sprintf('%.1f vs %.1f msg/s = %.3fx', $idle->{with}, $idle->{without}, $idle->{ratio}), $idle->{verdict} ];
	}
	my $rss = $ctx->{rss};
	if ($rss && defined $rss->{verdict})
	{
		push @g, [ "workers' RSS flat (+-10%), first vs last 10 s of 60 s at 32 clients",
			sprintf('private (VmRSS - RssShmem): writer %+.1f%%, applier %+.1f%%; VmRSS: writer %+.1f%%, applier %+.1f%%',
				@{ $rss->{pct} }{ 'writer private', 'applier private', 'writer VmRSS', 'applier VmRSS' }),
			"$rss->{verdict} (private RSS)" ];
	}
	else
	{
		push @g, [ "workers' RSS flat (+-10%) over 60 s", 'not measured (--rss-run)', '-' ];
	}
	return \@g;
}

# The goals as a Markdown table.
sub goals_markdown
{
	my ($g) = @_;
	return join('', "| goal | measured | verdict |\n", "|---|---|---|\n",
		map { "| $_->[0] | $_->[1] | $_->[2] |\n" } @$g);
}

# The Markdown table of the selected results, with the ratios to the
# baselines at the same client count (30-client pipelined runs against the
# 32-client one-statement baselines), and to the workload's own baseline
# ("x own baseline": append_pipelined, append_batch5, mix and cold_replay
# against plain_pipelined, plain_batch5, plain_mix and plain_cold_replay at
# the same count).
sub results_table
{
	my ($rows) = @_;
	my %rate;
	$rate{ $_->{workload} }{ $_->{clients} } = rate($_) for @$rows;
	my $x = sub {
		my ($r, $b, $c) = @_;
		my $br = $rate{$b}{$c};
		return (defined $br && $br > 0) ? sprintf('%.2f', $r / $br) : '-';
	};
	my $t = "| workload | clients | tps raw | tps sustained | msg/s sustained | flush s | p50 ms | p99 ms | x select1 | x plain_sync | x plain_async | x own baseline | rec/fsync | fsync ms | writer priv RSS kB | applier priv RSS kB | other load % | attempts (quiet) |\n"
	  . "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|\n";
	for my $f (@$rows)
	{
		my ($w, $c) = ($f->{workload}, $f->{clients});
		my $bc = $c == 30 ? 32 : $c;
		my $r = rate($f);
		my $fleet = !is_baseline($w);
		my @x = ('-') x 4;
		@x[ 0 .. 2 ] = map { $x->($r, $_, $bc) } qw(select1 plain_sync plain_async) if $fleet;
		$x[3] = $x->($r, 'plain_pipelined', $c) if $w eq 'append_pipelined';
		$x[3] = $x->($r, 'plain_batch5', $c) if $w eq 'append_batch5';
		$x[3] = $x->($r, "plain_$w", $c) if $w eq 'mix' || $w eq 'cold_replay';
		$t .= sprintf("| %s | %d | %.0f | %.0f | %s | %s | %.2f | %.2f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s (%s) |\n",
			$w, $c, $f->{tps_raw}, $f->{tps_sustained},
			($f->{messages} > 0 ? sprintf('%.0f', $f->{msgs_per_s_sustained}) : '-'),
			($fleet ? sprintf('%.2f', $f->{flush_s}) : '-'),
			$f->{lat_p50_ms}, $f->{lat_p99_ms}, @x,
			($f->{records_per_fsync} eq '' ? '-' : $f->{records_per_fsync}),
			($f->{fsync_avg_ms} eq '' ? '-' : $f->{fsync_avg_ms}),
			($fleet ? "$f->{writer_priv_kb_start} -> $f->{writer_priv_kb_end}" : '-'),
			($fleet ? "$f->{applier_priv_kb_start} -> $f->{applier_priv_kb_end}" : '-'),
			$f->{other_cpu_pct}, $f->{attempts}, $f->{attempts_quiet});
	}
	return $t;
}

# Reference ratios, not goals: PostgreSQL's cheapest durable transaction
# (plain_null, and 5 of it pipelined) against the inserts and fleetlm, the
# four-round-trip insert, the batches, mix and cold_replay against their
# baselines at 1 client.
sub references
{
	my ($ix) = @_;
	my $t = '';
	my $a32 = get($ix, 'append_small', 32, 'msgs_per_s_sustained');
	# [ reference, clients, its rate column and unit, what it is, the
	#   inserts it is compared with, the fleetlm workload compared with it ]
	for my $n ([ 'plain_null', 32, 'tps_sustained', 'tps',
			'a WAL message and its commit flush, no table: the cheapest durable transaction',
			[ 'plain_sync', 'plain_async' ], 'append_small' ],
		[ 'plain_null_pipelined', 30, 'msgs_per_s_sustained', 'msg/s',
			'5 WAL messages in one pgbench pipeline, one commit flush',
			[ 'plain_pipelined' ], 'append_pipelined' ])
	{
		my ($w, $c, $col, $unit, $what, $bases, $fleet) = @$n;
		my $r = get($ix, $w, $c, $col);
		next unless defined $r;
		$t .= "- $w ($what) at $c clients: $r $unit";
		for my $b (@$bases)
		{
			my $x = get($ix, $b, $c, 'msgs_per_s_sustained');
			$t .= "; / $b $x = " . ratio($r, $x) . 'x' if defined $x;
		}
		my $f = get($ix, $fleet, $c, 'msgs_per_s_sustained');
		$t .= "; $fleet / $w = $f / $r = " . ratio($f, $r) . 'x' if defined $f;
		$t .= "\n";
	}
	for my $b ('plain4_sync', 'plain4_async')
	{
		my $x = get($ix, $b, 32, 'msgs_per_s_sustained');
		next unless defined $a32 && defined $x;
		$t .= "- append_small at 32 clients / $b (four round trips: BEGIN; UPDATE; INSERT; COMMIT"
		  . ($b eq 'plain4_async' ? ', synchronous_commit=off' : '') . ") at 32: $a32 / $x msg/s = " . ratio($a32, $x) . "x\n";
	}
	my $pb = get($ix, 'append_batch5', 30, 'msgs_per_s_sustained');
	my $x = get($ix, 'plain_batch5', 30, 'msgs_per_s_sustained');
	if (defined $pb && defined $x)
	{
		$t .= "- append_batch5 / plain_batch5 (5 rows in one statement, durable), 30 clients x 5 messages: $pb / $x msg/s = " . ratio($pb, $x) . "x\n";
	}
	elsif (defined $pb)
	{
		$t .= "- append_batch5, 30 clients x 5 messages: $pb msg/s sustained (" . get($ix, 'append_batch5', 30, 'tps_raw') . " batches/s raw)\n";
	}
	for my $w ('mix', 'cold_replay')
	{
		my ($f, $b) = (get($ix, $w, 1, 'tps_sustained'), get($ix, "plain_$w", 1, 'tps_sustained'));
		next unless defined $f && defined $b;
		$t .= "- $w / plain_$w at 1 client: $f / $b tps = " . ratio($f, $b) . "x\n";
	}
	return $t;
}

# The idle-waiter rounds (rows of idle-waiters.csv, n waiters): the medians
# of msg/s sustained without and with the waiters over the quiet rounds
# (over all rounds if fewer than 2 were quiet: one round is no median), the
# ratio and its verdict (>= 0.9; INVALID if the waiters were not all
# waiting), and the Markdown text of the section.
sub idle_summary
{
	my ($rows, $n, $limit) = @_;
	my (%noisy, $nround, @text);
	for my $r (@$rows)
	{
		$noisy{ $r->{round} } = 1 unless is_quiet($r, $limit);
		$nround = $r->{round} if !defined $nround || $r->{round} > $nround;
	}
	return {} unless defined $nround;
	my $nq = grep { !$noisy{$_} } 1 .. $nround;
	my (@o, @w, @or, @wr, @ao, @aw, %orate, %wrate);
	my $bad = 0;
	push @text, '| round | idle waiters | tps raw | msg/s sustained | p50 ms | p99 ms | flush rounds | rec/round | waiting before -> after (backends/sessions) | waiter wake-ups (voluntary ctx switches) | wake-ups per round per waiter | waiters CPU s | other load % |',
	  '|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|';
	for my $f (@$rows)
	{
		my $r = $f->{round};
		my $with = $f->{waiters} > 0;
		my $rate = $f->{msgs_per_s_sustained};
		my $use = ($nq < 2 || !$noisy{$r});
		if ($use)
		{
			if ($with) { push @w, $rate; push @wr, $f->{tps_raw} }
			else { push @o, $rate; push @or, $f->{tps_raw} }
		}
		if ($with) { push @aw, $rate; $wrate{$r} = $rate }
		else { push @ao, $rate; $orate{$r} = $rate }
		my $ok = !$with
		  || ($f->{waiting_before} eq "$n/$n" && $f->{waiting_after} eq "$n/$n"
			&& $f->{same_backends} eq '1' && $f->{returned} eq '0');
		$bad++ unless $ok;
		my $fs = $f->{fsyncs};
		push @text, sprintf('| %d%s | %s | %.0f | %.0f | %.2f | %.2f | %d | %s | %s | %s | %s | %s | %s |',
			$r, ($noisy{$r} ? ($use ? ' (noisy)' : ' (noisy, not counted)') : ''),
			($with ? $n : 'none'), $f->{tps_raw}, $rate, $f->{lat_p50_ms}, $f->{lat_p99_ms}, $fs,
			($f->{records_per_fsync} eq '' ? '-' : $f->{records_per_fsync}),
			($with ? "$f->{waiting_before} -> $f->{waiting_after}" . ($ok ? '' : ' (FAILED)') : '-'),
			($with ? $f->{waiter_vcsw} : '-'),
			($with && $fs > 0 ? sprintf('%.3f', $f->{waiter_vcsw} / $fs / $n) : '-'),
			($with ? $f->{waiter_cpu_s} : '-'), $f->{other_cpu_pct});
	}
	my ($mo, $mw) = (median(@o) // 0, median(@w) // 0);
	my $ratio = $mo > 0 ? $mw / $mo : 0;
	my $v = $bad ? 'INVALID' : ($ratio >= 0.9 ? 'MET' : 'MISSED');
	my @pr;
	for my $r (1 .. $nround)
	{
		push @pr, $wrate{$r} / $orate{$r} if defined $wrate{$r} && $orate{$r};
	}
	push @text, '',
	  sprintf('median of %d rounds%s: without %.0f msg/s (%.0f tps raw), with %d idle waiters %.0f msg/s (%.0f tps raw): ratio %.3f (goal >= 0.9: %s)',
		scalar @o, ($nq < 2 ? " (all: $nq quiet, fewer than 2)" : ($nq < $nround ? " (the quiet ones, of $nround)" : '')),
		$mo, median(@or) // 0, $n, $mw, median(@wr) // 0, $ratio, ($bad ? 'INVALID, waiters not all waiting' : $v));
	if ($nq >= 2 && $nq < $nround)
	{
		my ($ao, $aw) = (median(@ao), median(@aw));
		push @text, sprintf('median of all %d rounds, noisy ones included: without %.0f, with %.0f msg/s: ratio %.3f',
			$nround, $ao, $aw, ($ao > 0 ? $aw / $ao : 0));
	}
	push @text, sprintf('ratio with / without per round (all rounds): %s; median %.3f',
		join(', ', map { sprintf('%.3f', $_) } @pr), median(@pr) // 0);
	return { ratio => sprintf('%.3f', $ratio) + 0, without => $mo, with => $mw, verdict => $v,
		text => join("\n", @text) . "\n" };
}

# The RSS run (rows of rss.csv, length in seconds): the first and last 10 s
# averages of each column, their change in %, and the verdict (the private
# RSS of both workers within +-10%).
sub rss_summary
{
	my ($rows, $seconds) = @_;
	my @cols = (
		[ 'writer VmRSS', 'writer_rss_kb' ], [ 'writer RssShmem', 'writer_shmem_kb' ],
		[ 'writer private', 'writer_priv_kb' ], [ 'applier VmRSS', 'applier_rss_kb' ],
		[ 'applier RssShmem', 'applier_shmem_kb' ], [ 'applier private', 'applier_priv_kb' ]);
	my @first = grep { $_->{t_s} <= 10 } @$rows;
	my @last = grep { $_->{t_s} > $seconds - 10 } @$rows;
	return {} unless @first && @last;
	my (%pct, @lines);
	for my $c (@cols)
	{
		my ($name, $col) = @$c;
		my $a = 0;
		$a += $_->{$col} for @first;
		$a /= @first;
		my $b = 0;
		$b += $_->{$col} for @last;
		$b /= @last;
		$pct{$name} = $a ? ($b - $a) * 100 / $a : 0;
		push @lines, sprintf('%s: first 10 s %.0f kB, last 10 s %.0f kB (%+.1f%%)', $name, $a, $b, $pct{$name});
	}
	$pct{$_} = sprintf('%.1f', $pct{$_}) + 0 for keys %pct;
	my $ok = abs($pct{'writer private'}) <= 10 && abs($pct{'applier private'}) <= 10;
	return { pct => \%pct, verdict => ($ok ? 'MET' : 'MISSED'), text => join("\n", @lines) . "\n" };
}

# The driver rounds (rows of driver.csv): the median sustained rate of each
# mode over the quiet rounds (all if fewer than 2 are quiet), the ratio
# pipeline / one and its verdict (>= 5), for reference executemany / one
# and select / one (the driver's own ceiling), and a Markdown table.
sub driver_summary
{
	my ($rows, $limit) = @_;
	return {} unless @$rows;
	my (%rates, %noisy, $depth);
	$noisy{ $_->{round} } = 1 for grep { !is_quiet($_, $limit) } @$rows;
	my %rounds = map { $_->{round} => 1 } @$rows;
	my $nq = grep { !$noisy{$_} } keys %rounds;
	for my $r (@$rows)
	{
		$depth = $r->{depth} if $r->{mode} ne 'one';
		push @{ $rates{ $r->{mode} } }, $r->{rate_sustained} if $nq < 2 || !$noisy{ $r->{round} };
	}
	my $t = "| round | mode | appends per Sync | appends | seconds | appends/s | flush s | appends/s sustained | fsync rounds | appends per fsync round | other load % |\n"
	  . "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
	for my $r (@$rows)
	{
		$t .= sprintf("| %s%s | %s | %d | %d | %.1f | %.0f | %.2f | %.0f | %d | %s | %s |\n",
			$r->{round}, ($noisy{ $r->{round} } ? ' (noisy)' : ''), $r->{mode}, $r->{depth}, $r->{appends},
			$r->{seconds}, $r->{rate}, $r->{flush_s}, $r->{rate_sustained}, $r->{fsyncs},
			($r->{fsyncs} > 0 ? sprintf('%.1f', $r->{appends} / $r->{fsyncs}) : '-'), $r->{other_cpu_pct});
	}
	my %s = (depth => $depth // 100, rounds => scalar(@{ $rates{pipeline} || [] }), text => $t);
	my ($one, $pipe) = (median(@{ $rates{one} || [] }), median(@{ $rates{pipeline} || [] }));
	return \%s unless defined $one && defined $pipe;
	$s{one} = $one;
	$s{pipeline} = $pipe;
	$s{ratio} = ratio($pipe, $one);
	$s{verdict} = verdict($s{ratio}, 5);
	for my $ref ('executemany', 'select')
	{
		my $m = median(@{ $rates{$ref} || [] });
		next unless defined $m;
		$s{$ref} = $m;
		$s{"${ref}_ratio"} = ratio($m, $one);
	}
	return \%s;
}

# The two tables of pg_stat_user_tables (rows of table-stats.csv): per
# measurement, and after the setup and at the end.
sub table_stats_tables
{
	my ($rows) = @_;
	my (%cell, %lab, @order);
	for my $f (@$rows)
	{
		my $m = $f->{measurement};
		next if $m eq '0' || $m eq 'end';
		if (!$lab{$m})
		{
			push @order, $m;
			$lab{$m} = "$f->{workload} | $f->{clients} | $f->{attempt}";
		}
		my $dv = $f->{autovacuums_during} eq '' ? '' : " (+$f->{autovacuums_during})";
		my $da = $f->{autoanalyzes_during} eq '' ? '' : " (+$f->{autoanalyzes_during})";
		my $chg = $f->{table} =~ /sessions/ ? $f->{upd_during} : $f->{ins_during};
		$cell{$m}{ $f->{table} } = sprintf('+%s / %s / %s / av %s%s, an %s%s', $chg, $f->{n_live_tup},
			$f->{n_dead_tup}, $f->{autovacuum_count}, $dv, $f->{autoanalyze_count}, $da);
	}
	my $t = "| # | measurement | clients | attempt | fleetlm.messages: +ins / live / dead / autovacuums, autoanalyzes | bench_plain_messages: same | fleetlm.sessions: +upd / live / dead / ... | bench_plain_sessions: same |\n"
	  . "|---:|---|---:|---|---|---|---|---|\n";
	for my $m (@order)
	{
		$t .= "| $m | $lab{$m} | "
		  . join(' | ', map { $cell{$m}{$_} // '' } qw(fleetlm.messages bench_plain_messages fleetlm.sessions bench_plain_sessions))
		  . " |\n";
	}
	$t .= "\n| when | table | n_tup_ins | n_tup_upd (HOT) | n_tup_del | n_live_tup | n_dead_tup | last_autovacuum (UTC) | last_autoanalyze (UTC) | autovacuum_count | autoanalyze_count |\n"
	  . "|---|---|---:|---:|---:|---:|---:|---|---|---:|---:|\n";
	for my $f (grep { $_->{measurement} eq '0' || $_->{measurement} eq 'end' } @$rows)
	{
		$t .= sprintf("| %s | %s | %s | %s (%s) | %s | %s | %s | %s | %s | %s | %s |\n",
			$f->{workload}, $f->{table}, $f->{n_tup_ins}, $f->{n_tup_upd}, $f->{n_tup_hot_upd}, $f->{n_tup_del},
			$f->{n_live_tup}, $f->{n_dead_tup}, ($f->{last_autovacuum} eq '' ? '-' : $f->{last_autovacuum}),
			($f->{last_autoanalyze} eq '' ? '-' : $f->{last_autoanalyze}), $f->{autovacuum_count}, $f->{autoanalyze_count});
	}
	return $t;
}

# The agent-turn table and the p50 ratios to append_small at 1 client.
sub turn_table
{
	my ($rows, $ix) = @_;
	my $t = "| workload | history | clients | turns/s raw | turns/s sustained | msg/s sustained | p50 ms | p99 ms | turns started | completed | turns_failed | attempts retried | pgbench failed | clients aborted | dispatcher CPU % of one CPU | mock CPU % | server log WARNING+ lines | other load % |\n"
	  . "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
	for my $f (grep { $_->{workload} eq 'turn' || $_->{workload} eq 'turn_last' } @$rows)
	{
		$t .= sprintf("| %s | %s | %d | %.0f | %.0f | %.0f | %.2f | %.2f | %d | %d | %d | %d | %d | %d | %s | %s | %d | %s |\n",
			$f->{workload}, ($f->{workload} eq 'turn' ? 'tail 50' : 'last'), $f->{clients}, $f->{tps_raw},
			$f->{tps_sustained}, $f->{msgs_per_s_sustained}, $f->{lat_p50_ms}, $f->{lat_p99_ms},
			$f->{turns_started}, $f->{turns_completed}, $f->{turns_failed}, $f->{attempts_retried},
			$f->{failed}, $f->{aborted_clients}, $f->{dispatcher_cpu_pct_of_one_cpu}, $f->{mock_cpu_pct},
			$f->{log_problems}, $f->{other_cpu_pct});
	}
	my $a1 = get($ix, 'append_small', 1, 'lat_p50_ms');
	for my $w ('turn', 'turn_last')
	{
		my $tp1 = get($ix, $w, 1, 'lat_p50_ms');
		next unless defined $tp1 && defined $a1;
		$t .= sprintf("\n%s p50 at 1 client / append_small p50 at 1 client: %s / %s ms = %.2f (goal <= 3)\n",
			$w, $tp1, $a1, ($a1 > 0 ? $tp1 / $a1 : 0));
	}
	return $t;
}

sub json_str
{
	my ($s) = @_;
	$s =~ s/\\/\\\\/g;
	$s =~ s/"/\\"/g;
	return "\"$s\"";
}

# One JSON object per row, numbers unquoted, empty fields null; the columns
# named in %$quote always quoted.
sub json_rows
{
	my ($head, $rows, $quote) = @_;
	return join(",\n", map {
		my $r = $_;
		'    {' . join(', ', map {
			my $v = $r->{$_};
			my $j = (!defined $v || $v eq '') ? 'null'
			  : ($v =~ /^-?[0-9]+(\.[0-9]+)?$/ && !($quote && $quote->{$_})) ? $v : json_str($v);
			json_str($_) . ": $j"
		} @$head) . '}'
	} @$rows) . "\n";
}

# results.json: the machine, the settings (name => value), the selected
# runs, the idle-waiter rounds, the table statistics and the goals.
sub json_report
{
	my (%a) = @_;
	my $c = $a{ctx};
	my $j = "{\n";
	$j .= '  "timestamp": ' . json_str($c->{TS}) . ",\n";
	$j .= '  "quick": ' . ($c->{QUICK} ? 'true' : 'false') . ",\n";
	$j .= "  \"machine\": {\n";
	$j .= "    \"nproc\": $c->{NPROC}, \"cpu\": " . json_str($c->{CPU}) . ', "memory": ' . json_str($c->{MEM}) . ",\n";
	$j .= '    "disk": ' . json_str($c->{DISK}) . ", \"fdatasync_us\": $c->{FDATASYNC_US}, \"postgres\": " . json_str($c->{PGVER}) . ",\n";
	$j .= '    "fleetlm": ' . json_str($c->{BUILT_FROM}) . "\n  },\n";
	$j .= "  \"settings\": {\n"
	  . join(",\n", map { '    ' . json_str($_->[0]) . ': ' . json_str($_->[1]) } @{ $a{settings} }) . "\n  },\n";
	$j .= "  \"shmem_size\": $c->{SHMEM},\n";
	$j .= "  \"duration_s\": $c->{DURATION}, \"nsessions\": $c->{NSESSIONS}, \"ncold\": $c->{NCOLD}, \"nmany\": $c->{NMANY},\n";
	$j .= "  \"runs\": [\n" . json_rows($a{head}, $a{runs}) . "  ],\n";
	$j .= "  \"idle_waiters\": [\n" . json_rows($a{idle_head}, $a{idle_rows}) . "  ],\n" if @{ $a{idle_rows} || [] };
	$j .= "  \"driver\": [\n" . json_rows($a{driver_head}, $a{driver_rows}) . "  ],\n" if @{ $a{driver_rows} || [] };
	$j .= "  \"table_stats\": [\n" . json_rows($a{tstats_head}, $a{tstats_rows}, { attempt => 1 }) . "  ],\n";
	$j .= "  \"goals\": [\n"
	  . join(",\n", map { '    {"goal": ' . json_str($_->[0]) . ', "measured": ' . json_str($_->[1]) . ', "verdict": ' . json_str($_->[2]) . '}' } @{ $a{goals} })
	  . "\n  ]\n}\n";
	return $j;
}

1;

# 018_eviction_load.pl: sessions evicted from the shared session table and
# loaded back from the tables, again and again, under load.  A node with
# the smallest session table (fleetlm.max_active_sessions = 16) takes
# appends from four clients to 200 sessions, so nearly every append misses
# the table and evicts another session.  Meanwhile a reader checks that
# messages() and last_seq() of a session never go backwards, never show a
# gap, and never show a different message at a seq.  Afterwards every
# acknowledged append is there exactly once, seqs gapless.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use IPC::Run;
use FleetlmTest;

my $nsessions = 200;
my $clients = 4;
my $per = 600;
my $node = fleetlm_node('evict',
	'fleetlm.max_active_sessions' => 16,
	'fleetlm.flush_interval' => '10ms');
my $sessions = create_sessions($node, 'ev', $nsessions);

# Clients go on after an error, and print its SQLSTATE.
my $t0 = time;
my $load = start_load($node, sessions => $sessions, clients => $clients, per_client => $per,
	tag => 'E', pad => 20, on_error_stop => 0, verbose => 1);

sub acked_so_far
{
	my $n = 0;
	for my $c (1 .. $clients)
	{
		open my $fh, '<', "$load->{dir}/client$c.out" or next;
		$n++ while <$fh>;
		close $fh;
	}
	return $n;
}

# the reader's own psql session (start_reader)
my $reader = start_reader($node);
sub read_query { return $reader->{query}->(@_); }

# Read random sessions while the load runs.  A value of a session is
# the durable count a read saw: last_seq(), or the last seq of messages().
my (%last, %marker_at, @read_problems, @read_errors);
my ($reads, $max_active) = (0, 0);
my $deadline = time + 60;
my ($progress, $progress_at) = (-1, time);
while (time < $deadline)
{
	my $s = $sessions->[ int(rand(@$sessions)) ];
	my ($l, $lerr) = read_query("SELECT fleetlm.last_seq('$s')");
	my ($m, $merr) = read_query(
		"SELECT coalesce(string_agg(seq || ':' || (content->>'m'), ',' ORDER BY seq), '') FROM fleetlm.messages('$s', 0, 100000)");
	if ($lerr ne '' || $merr ne '')
	{
		push @read_errors, $lerr . $merr;
		next;
	}
	$reads++;
	my @pairs = map { [ split /:/ ] } grep { $_ ne '' } split /,/, $m;
	my $n = @pairs ? $pairs[-1][0] : 0;
	push @read_problems, "$s: last_seq() went back from $last{$s} to $l" if $l < ($last{$s} // 0);
	push @read_problems, "$s: messages() returned up to seq $n, less than last_seq() $l read before" if $n < $l;
	for my $i (0 .. $#pairs)
	{
		my ($seq, $mk) = @{ $pairs[$i] };
		push @read_problems, "$s: messages() has seq $seq at position " . ($i + 1) if $seq != $i + 1;
		push @read_problems, "$s: seq $seq was $marker_at{$s}{$seq}, now $mk"
		  if exists $marker_at{$s}{$seq} && $marker_at{$s}{$seq} ne $mk;
		$marker_at{$s}{$seq} = $mk;
	}
	$last{$s} = $n;
	if ($reads % 20 == 0)
	{
		my $a = stat_value($node, 'active_sessions');
		$max_active = $a if $a > $max_active;
		my $done = acked_so_far();
		last if $done >= $clients * $per && $reads >= 120;
		if ($done != $progress)
		{
			($progress, $progress_at) = ($done, time);
		}
		elsif (time - $progress_at > 5)
		{
			last;    # the clients stopped (an error): finish_load tells
		}
	}
}
$reader->{finish}->();
my ($acked, $sent) = finish_load($load);
my $load_s = sprintf('%.1f', time - $t0);

# The one acceptable error: the table full of sessions whose messages the
# applier has not moved yet (53400).  An append that failed so appended
# nothing (checked below); every other one was acknowledged.
my $e = check_client_errors($load, 'appends against eviction',
	allowed => [qr/^ERROR:  53400: too many active fleetlm sessions$/], may_end_early => 0);
my $full = $e->{count}{'ERROR:  53400: too many active fleetlm sessions'} // 0;
my $nfailed = scalar(keys %{ $load->{failed} });
is(scalar(@$acked) + $nfailed, $clients * $per, 'every append was acknowledged or failed with 53400');
is($nfailed, $full, 'each 53400 error names the append it failed');
cmp_ok(scalar(@$acked), '>=', $clients * $per * 0.9,
	scalar(@$acked) . " of " . $clients * $per . " appends acknowledged ($full failed with 53400)");
is(scalar(@read_errors), 0, 'no read failed') or diag(join("\n", @read_errors));
is(scalar(@read_problems), 0, "reads during the load never went backwards nor showed a gap ($reads reads)")
  or diag(join("\n", @read_problems[ 0 .. ($#read_problems < 20 ? $#read_problems : 19) ]));
cmp_ok($reads, '>', 100, 'the reader read during (and right after) the load');

my %touched = map { $_->[2] => 1 } @$acked;
cmp_ok($max_active, '<=', 16, "the session table never held more than 16 sessions (at most $max_active seen)");
cmp_ok(scalar(keys %touched), '>', 150,
	scalar(keys %touched) . ' sessions took appends through a table of 16: sessions were evicted and loaded again and again');

my ($lost, $checked) = verify_acked($node, $acked, $sent, $sessions, 'after the load');
my $list = join(',', map { "'$_'" } keys %{ $load->{failed} });
is(($nfailed ? fleet_query($node, "SELECT count(*) FROM fleetlm.messages WHERE content->>'m' IN ($list)") : 0),
	'0', 'no append that failed with 53400 was stored');

# what the reader saw is what is there
my $changed = 0;
for my $s (keys %marker_at)
{
	my %now = map { split /:/ } split /\n/, fleet_query($node,
		"SELECT seq || ':' || (content->>'m') FROM fleetlm.messages('$s', 0, 100000)");
	for my $seq (keys %{ $marker_at{$s} })
	{
		$changed++ if ($now{$seq} // '') ne $marker_at{$s}{$seq};
	}
}
is($changed, 0, 'every message a reader saw is still there at its seq');

diag("018_eviction_load: sessions=$nsessions through max_active_sessions=16, clients=$clients, acknowledged checked=$checked, lost=$lost, "
	  . "reads=$reads, read problems=" . scalar(@read_problems) . ", max active=$max_active, 53400 errors=$full, load took ${load_s}s");
$node->stop;
done_testing();

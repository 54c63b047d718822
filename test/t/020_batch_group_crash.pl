# 020_batch_group_crash.pl: append_batch groups of 10 messages while the
# applier moves at most 3 messages per transaction
# (fleetlm.flush_batch_size = 3), so it commits groups in pieces; kill -9
# of the postmaster under load from four clients, three times.  After each
# restart every batch is all or nothing (in messages() and, after
# flush(), in the table), every acknowledged batch is there once at the
# seqs it was given, and seqs are gapless.  Under the load, messages()
# shows every batch whole, too.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FleetlmTest;

my $node = fleetlm_node('batchcrash', 'fleetlm.flush_interval' => '10ms');
fleet_query($node, 'ALTER SYSTEM SET fleetlm.flush_batch_size = 3');
fleet_query($node, 'SELECT pg_reload_conf()');
is(fleet_query($node, 'SHOW fleetlm.flush_batch_size'), '3', 'flush_batch_size is 3');
my $sessions = create_sessions($node, 'bg', 6);
my $group = 10;
my $clients = 4;

my (%acked_batch, %sent_batch);    # batch => "session first_seq"; batch => session
my ($partial_seen, $early_total, $lost, $checked_batches) = (0, 0, 0, 0);

# messages() of every session: batch => [ [seq, j] ... ] and problems
sub check_group_batches
{
	my ($label) = @_;
	my (%found, @problems);
	for my $s (@$sessions)
	{
		my $expect = 1;
		for my $line (split /\n/, fleet_query($node,
				"SELECT seq, content->>'b', content->>'j' FROM fleetlm.messages('$s', 0, 100000) ORDER BY seq"))
		{
			my ($seq, $b, $j) = split /\|/, $line;
			push @problems, "$s: seq $seq where $expect was expected" if $seq != $expect;
			$expect = $seq + 1;
			if (!exists $sent_batch{$b} || $sent_batch{$b} ne $s)
			{
				push @problems, "$s seq $seq: batch $b never sent to it";
				next;
			}
			push @{ $found{$b} }, [ $seq, $j ];
		}
	}
	my $whole = 0;
	for my $b (sort keys %found)
	{
		my @m = @{ $found{$b} };
		my $first = $m[0][0];
		my $ok = @m == $group;
		for my $i (0 .. $#m)
		{
			$ok &&= $m[$i][0] == $first + $i && $m[$i][1] == $i + 1;
		}
		if (!$ok)
		{
			push @problems, "batch $b is not whole and in order: " . join(',', map { "$_->[0]:$_->[1]" } @m);
			next;
		}
		$whole++;
		push @problems, "batch $b was acknowledged as $acked_batch{$b}, found at $sent_batch{$b} $first"
		  if exists $acked_batch{$b} && $acked_batch{$b} ne "$sent_batch{$b} $first";
	}
	my @missing = grep { !exists $found{$_} } keys %acked_batch;
	is(scalar(@missing), 0, "$label: every acknowledged batch is there (" . scalar(keys %acked_batch) . ' checked)')
	  or diag("$label: lost batches: @missing[0 .. ($#missing < 9 ? $#missing : 9)]");
	is(scalar(@problems), 0, "$label: each batch whole, in order, at its acknowledged seqs; seqs gapless ($whole batches)")
	  or diag(join("\n", @problems[ 0 .. ($#problems < 19 ? $#problems : 19) ]));

	fleet_query($node, 'SELECT fleetlm.flush()');
	is(fleet_query($node, "SELECT count(*) FROM (SELECT content->>'b' FROM fleetlm.messages"
			  . " GROUP BY 1 HAVING count(*) <> $group) x"),
		'0', "$label: after flush() the table holds every batch whole or not at all");
	is(table_vs_messages($node, $sessions),
		'0', "$label: and exactly what messages() returns");
	return (scalar(@missing), scalar(keys %acked_batch));
}

for my $round (1 .. 3)
{
	my $tag = "G$round";
	my $load = start_load($node, clients => $clients, tag => $tag,
		statements => sub {
			my ($c) = @_;
			my @st;
			for my $i (1 .. 3000)
			{
				my $s = $sessions->[ int(rand(@$sessions)) ];
				my $u = $s =~ s/^.*-(\d+)$/u-$1/r;
				my $b = "$tag-c$c-$i";
				my $msgs = join(', ', map { "{\"kind\": \"text\", \"content\": {\"b\": \"$b\", \"j\": $_}}" } 1 .. $group);
				push @st, [ "(SELECT min(s) FROM fleetlm.append_batch('$s', '$u', '[$msgs]') s)", $b, $s ];
			}
			return @st;
		});
	wait_acked($load, 100 + int(rand(400)));
	# readers see a batch whole or not at all while the applier splits it:
	# each batch that starts in the last 200 messages has all 10
	my $torn_reads = 0;
	for my $pass (1 .. 3)
	{
		for my $s (@$sessions)
		{
			$torn_reads += fleet_query($node,
				"SELECT count(*) FROM (SELECT content->>'b' FROM fleetlm.messages('$s', greatest(fleetlm.last_seq('$s') - 200, 0), 100000)"
				  . " GROUP BY 1 HAVING count(*) <> $group AND min((content->>'j')::int) = 1) x");
		}
	}
	is($torn_reads, 0, "$tag: messages() under load showed every batch whole");
	# the applier commits groups in pieces: kill while one is half in the
	# table, if that is seen within a moment
	for my $try (1 .. 20)
	{
		my $partial = fleet_query($node, "SELECT count(*) FROM (SELECT content->>'b' FROM fleetlm.messages"
			  . " GROUP BY 1 HAVING count(*) <> $group) x");
		if ($partial > 0)
		{
			$partial_seen++;
			last;
		}
	}
	$node->kill9;
	my ($acked, $sent) = finish_load($load);
	my $e = check_client_errors($load, "$tag: kill -9", allowed => [ crash_errors() ]);
	ok(scalar(@$acked) > 0 && $e->{early} == $clients,
		"$tag: the kill -9 hit the load mid-way: every client cut off (" . scalar(@$acked) . ' batches acknowledged)');
	$early_total += $e->{early};
	$acked_batch{ $_->[1] } = "$_->[2] $_->[0]" for @$acked;
	%sent_batch = (%sent_batch, %$sent);
	restart_node($node);
	wait_ready($node);
	is(fleet_query($node, 'SHOW fleetlm.flush_batch_size'), '3', "$tag: flush_batch_size is still 3");
	($lost, $checked_batches) = check_group_batches("after kill -9 ($tag)");
}
ok($partial_seen > 0, "the table held a partly applied batch just before a kill ($partial_seen of 3 rounds)");

diag("020_batch_group_crash: faults=3 postmaster kill -9 under append_batch load (groups of $group, flush_batch_size=3), "
	  . "acknowledged batches checked=$checked_batches, lost=$lost, rounds with a partly applied batch at the kill=$partial_seen, clients cut off=$early_total");
$node->stop;
done_testing();

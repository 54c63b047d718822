# 002_crash.pl: an immediate stop and five kill -9 of the postmaster at
# random moments under load from several connections keep every
# acknowledged append exactly once, with gapless seqs.  Each client's
# stderr holds only what the crash explains (its connection lost), and the
# crash cut every client off mid-way with such an error.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use FleetlmTest;

my $node = fleetlm_node('crash', 'fleetlm.flush_interval' => '1s');
my $sessions = create_sessions($node, 'cr', 6);
my (@acked, %sent);
my $early_total = 0;

sub round
{
	my ($tag, $how) = @_;
	my $load = start_load($node, sessions => $sessions, clients => 6,
		per_client => 3000, tag => $tag);
	wait_acked($load, 200 + int(rand(1500)));
	if ($how eq 'immediate')
	{
		$node->stop('immediate');
	}
	else
	{
		$node->kill9;
	}
	my ($a, $s) = finish_load($load);
	push @acked, @$a;
	%sent = (%sent, %$s);
	ok(scalar(@$a) > 0, "$tag: some appends were acknowledged before the $how stop");
	my $e = check_client_errors($load, "$tag: $how stop", allowed => [ crash_errors() ]);
	note("$tag: client messages: " . join('; ', map { "$e->{count}{$_} x $_" } sort keys %{ $e->{count} }));
	ok(scalar(@$a) < scalar(keys %$s) && $e->{early} == 6,
		"$tag: the $how stop hit the load mid-way: every client cut off (" . scalar(@$a) . " acknowledged, $e->{early} of 6 clients cut off)");
	$early_total += $e->{early};
	restart_node($node);
	wait_ready($node);
	return verify_acked($node, \@acked, \%sent, $sessions, "after $how ($tag)");
}

round('I1', 'immediate');
my ($lost, $checked);
for my $k (1 .. 5)
{
	($lost, $checked) = round("K$k", 'kill9');
}

diag("002_crash: faults=6 (1 immediate stop, 5 postmaster kill -9 at random moments), acknowledged checked=$checked, lost=$lost, clients cut off=$early_total, unexplained client errors=0");
$node->stop;
done_testing();

# 001_restart.pl: a fast restart keeps every acknowledged message, and
# appends continue with the right seqs.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FleetlmTest;

my $node = fleetlm_node('restart');
my $sessions = create_sessions($node, 'rs', 8);

my $load = start_load($node, sessions => $sessions, clients => 4, per_client => 150, tag => 'A');
my ($acked, $sent) = finish_load($load);
is(scalar(@$acked), 600, 'all 600 appends acknowledged');

$node->restart;
wait_ready($node);
ok($node->log_contains(qr/fleetlm recovery complete/), 'recovery ran at start');
verify_acked($node, $acked, $sent, $sessions, 'after fast restart');

# a second round continues each session's seqs
$load = start_load($node, sessions => $sessions, clients => 2, per_client => 100, tag => 'B');
my ($acked2, $sent2) = finish_load($load);
my @all = (@$acked, @$acked2);
my %allsent = (%$sent, %$sent2);
$node->restart;
wait_ready($node);
my ($lost, $checked) = verify_acked($node, \@all, \%allsent, $sessions, 'after second restart');

my $total = fleet_query($node, 'SELECT count(*) FROM fleetlm.messages');
is($total, 800, 'table holds 800 messages');
diag("001_restart: faults=2 restarts, acknowledged checked=$checked, lost=$lost");
$node->stop;
done_testing();

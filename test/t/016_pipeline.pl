# 016_pipeline.pl: pipelined appends (libpq pipeline mode) share one
# durability wait, and still no result reaches the client before its
# message is durable: with fdatasync stalled (an LD_PRELOAD shim), a
# pipelined client receives nothing, also when the results would fill the
# send buffer; a
# pipeline reads its own writes; a crash under pipelined load loses no
# acknowledged message.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use FleetlmTest;

my $client = build_pipeline_client();
plan skip_all => 'cannot build the libpq pipeline client' unless defined $client;
my $stall = fsync_shim('STALL');
plan skip_all => 'no C compiler to build the fdatasync shim' unless defined $stall;
my $dir = PostgreSQL::Test::Utils::tempdir();

my $node = fleetlm_node('pipeline');
my $sessions = create_sessions($node, 'pl', 4);

# Run the statements through the pipelined client in the background.
sub start_client
{
	my ($name, $depth, @stmts) = @_;
	open my $fh, '>', "$dir/$name.sql" or die $!;
	print $fh "$_\n" for @stmts;
	close $fh;
	my $out = '';
	my $err = '';
	my $h = IPC::Run::start([ $client, $node->connstr('postgres'), "$dir/$name.sql", $depth ],
		'>', \$out, '2>', \$err);
	return ($h, \$out, \$err);
}

sub appends
{
	my ($s, $n, $tag) = @_;
	return map { "SELECT fleetlm.append('$s', 'u-1', 'text', '{\"m\": \"$tag-$_\"}')::text" } 1 .. $n;
}

# 1. with fdatasync stalled, a pipeline of 5 appends gets no result
fsync_fault_on($stall);
my ($h, $out, $err) = start_client('five', 5, appends('pl-1', 5, 'five'));
sleep 2;
$h->pump_nb;
is($$out, '', 'no result reaches the client while nothing is durable');
fsync_fault_off($stall);
$h->finish;
is($$out, "1\n2\n3\n4\n5\n", 'once the disk is back, the five seqs arrive');
is($$err, '', 'and the client saw no error');

# 2. results that would fill the send buffer: still nothing early
fsync_fault_on($stall);
($h, $out, $err) = start_client('many', 300, appends('pl-2', 300, 'many'));
sleep 2;
$h->pump_nb;
is($$out, '', 'no result of a 300-deep pipeline reaches the client early');
fsync_fault_off($stall);
$h->finish;
is(scalar(split /\n/, $$out), 300, 'then all 300 arrive');
is($$err, '', 'and the client saw no error');

# 3. the pipeline shares fsyncs, and reads its own writes
my ($f0, $a0) = split /\|/, stat_value($node, 'fsyncs, appends');
($h, $out, $err) = start_client('own', 5, appends('pl-3', 4, 'own'),
	"SELECT (SELECT string_agg(content->>'m', ',' ORDER BY seq) FROM fleetlm.messages('pl-3'))");
$h->finish;
is((split /\n/, $$out)[4], 'own-1,own-2,own-3,own-4', 'messages() in the same pipeline sees its appends');
is($$err, '', 'and the client saw no error');
($h, $out, $err) = start_client('depth', 10, appends('pl-4', 200, 'depth'));
$h->finish;
is($$err, '', 'a 10-deep pipeline of 200 appends sees no error');
my ($f1, $a1) = split /\|/, stat_value($node, 'fsyncs, appends');
cmp_ok(($a1 - $a0) / ($f1 - $f0), '>', 1.5,
	sprintf('appends share fsyncs: %d appends, %d fsyncs', $a1 - $a0, $f1 - $f0));

# 4. kill -9 under pipelined load
my $load = start_load($node, sessions => $sessions, clients => 4, per_client => 3000,
	tag => 'P', pipeline => 5, pipeline_client => $client);
wait_acked($load, 300 + int(rand(1500)));
$node->kill9;
my ($acked, $sent) = finish_load($load);
my $e = check_client_errors($load, 'kill -9 under pipelined load', allowed => [ crash_errors() ]);
note('client messages: ' . join('; ', map { "$e->{count}{$_} x $_" } sort keys %{ $e->{count} }));
ok(scalar(@$acked) < 12000 && $e->{early} == 4,
	scalar(@$acked) . " pipelined appends acknowledged before the crash, which cut off $e->{early} of 4 clients");
restart_node($node);
wait_ready($node);
# the earlier parts of this test appended through the same sessions
my %all_sent = %$sent;
for my $i (1 .. 4)
{
	for my $line (split /\n/, fleet_query($node, "SELECT content->>'m' FROM fleetlm.messages('pl-$i', 0, 100000) WHERE content->>'m' NOT LIKE 'P-%'"))
	{
		$all_sent{$line} = "pl-$i";
	}
}
my ($lost, $checked) = verify_acked($node, $acked, \%all_sent, $sessions, 'after kill -9 under pipelined load');
diag("016_pipeline: faults=3 (fdatasync stalled twice, postmaster kill -9 under pipelined load), acknowledged checked=$checked, lost=$lost, early results=0");
$node->stop;
done_testing();

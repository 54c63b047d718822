# 041_slow_pipeline.pl: a libpq pipeline that produces its appends more
# slowly than the server runs them (test/slow_pipeline_client.c: each
# append on the wire alone, a pause, then the next; one Sync at the end).
# In the extended protocol the backend does not wait for each append's
# fsync while it reads the next message; it waits once, at the Sync.  With
# fdatasync stalled (an LD_PRELOAD shim):
#  - all the pipeline's appends run while nothing is durable, the backend
#    reading the next message (ClientRead), not waiting for durability;
#  - after the Sync the backend waits, and no result reaches the client
#    until the disk is back; then every seq arrives, in order, with fewer
#    fsync rounds than appends;
#  - a cancel of that wait at the Sync is an ERROR (the connection stays),
#    and no result is sent;
#  - the simple-query protocol still waits in every append.
# Without a stall, a slow pipeline gets every seq and no early result.
use strict;
use warnings;
use Config;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use FleetlmTest;

# Compile test/slow_pipeline_client.c against the system's libpq (a
# relocated test installation has no headers).
sub build_slow_client
{
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my $inc = `pg_config --includedir 2>/dev/null` || '';
	chomp $inc;
	$inc = '/usr/include/postgresql' unless -e "$inc/libpq-fe.h";
	my $bin = "$dir/slow_pipeline_client";
	my $rc = system("cc -O2 -Wall -Wextra -o $bin $ENV{TESTDIR}/test/slow_pipeline_client.c -I$inc -lpq");
	return $rc == 0 ? $bin : undef;
}

my $client = build_slow_client();
plan skip_all => 'cannot build the slow libpq pipeline client' unless defined $client;
my $stall = fsync_shim('STALL');
plan skip_all => 'no C compiler to build the fdatasync shim' unless defined $stall;

my $node = fleetlm_node('slow_pipeline');
create_sessions($node, 'sp', 4);

# Start the client in the background; returns the handle and refs to its
# stdin, stdout and stderr.
sub start_client
{
	my ($session, $user, $count, $delay_ms, $hold) = @_;
	my ($in, $out, $err) = ('', '', '');
	my @cmd = ($client, $node->connstr('postgres'), $session, $user, $count, $delay_ms);
	push @cmd, 'hold' if $hold;
	# a client that hangs (a backend stuck in fdatasync) fails the test
	my $h = IPC::Run::start(\@cmd, '<', \$in, '>', \$out, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return ($h, \$in, \$out, \$err);
}

# Pump the client until its stdout matches $re (at most 60 s).
sub wait_output
{
	my ($h, $out, $re) = @_;
	for (1 .. 600)
	{
		$h->pump_nb;
		return 1 if $$out =~ $re;
		usleep(100_000);
	}
	return 0;
}

# Poll until the SQL expression is true (at most 60 s).
sub poll_true
{
	my ($sql) = @_;
	return $node->poll_query_until('postgres', "SELECT $sql");
}

sub rows_of
{
	my ($out) = @_;
	return [ $$out =~ /^ROW \d+ (\d+)$/mg ];
}

my $backend = "query LIKE 'SELECT fleetlm.append(\$1%' AND backend_type = 'client backend'";

# 1. fdatasync stalled: twenty appends, 20 ms apart, run without a wait
my ($f0, $a0) = split /\|/, stat_value($node, 'fsyncs, appends');
fsync_fault_on($stall);
my ($h, $in, $out, $err) = start_client('sp-1', 'u-1', 20, 20, 1);
ok(wait_output($h, $out, qr/^SENT 20$/m), 'the slow client sent its 20 appends');
ok(poll_true("appends - $a0 = 20 FROM fleetlm.stat"),
	'all 20 appends ran while fdatasync is stalled: no append waited for its fsync');
ok(poll_true("count(*) = 1 FROM pg_stat_activity WHERE $backend AND wait_event = 'ClientRead'"),
	'the backend reads the next message, it does not wait for durability');
$$in .= "sync\n";
ok(wait_output($h, $out, qr/^SYNC SENT$/m), 'the client sent the Sync');
ok(poll_true("count(*) = 1 FROM pg_stat_activity WHERE $backend AND wait_event_type = 'Extension'"),
	'at the Sync the backend waits for durability');
sleep 1;
$h->pump_nb;
unlike($$out, qr/^(ROW|EARLY)/m, 'no result reaches the client while nothing is durable');
fsync_fault_off($stall);
$h->finish;
is_deeply(rows_of($out), [ 1 .. 20 ], 'once the disk is back, the 20 seqs arrive in order');
like($$out, qr/^SYNC$/m, 'and the end of the pipeline');
is($$err, '', 'the client saw no error');
my ($f1, $a1) = split /\|/, stat_value($node, 'fsyncs, appends');
is($a1 - $a0, 20, 'the pipeline made 20 appends');
cmp_ok($f1 - $f0, '<', $a1 - $a0,
	sprintf('with fewer fsync rounds than appends: %d rounds for %d appends', $f1 - $f0, $a1 - $a0));

# 2. a cancel of the wait at the Sync: an ERROR, no result, the
# connection stays
fsync_fault_on($stall);
($h, $in, $out, $err) = start_client('sp-2', 'u-2', 3, 10, 1);
ok(wait_output($h, $out, qr/^SENT 3$/m), 'three appends sent');
$$in .= "sync\n";
ok(wait_output($h, $out, qr/^SYNC SENT$/m), 'the Sync sent');
ok(poll_true("count(*) = 1 FROM pg_stat_activity WHERE $backend AND wait_event_type = 'Extension'"),
	'the backend waits at the Sync');
$node->safe_psql('postgres', "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE $backend");
$h->finish;
unlike($$out, qr/^ROW/m, 'after a cancel no result is sent');
like($$err, qr/statement 1: ERROR:  canceling statement due to user request/,
	'the client gets the cancel as an error of the pipeline');
like($$err, qr/WARNING:  canceled the wait for durability of pipelined fleetlm appends/,
	'with the warning that the appends may still become durable');
unlike($$err, qr/FATAL|server closed the connection/, 'the connection was not closed');
fsync_fault_off($stall);
ok(poll_true("fleetlm.last_seq('sp-2') = 3"), 'the three appends became durable later');

# 3. the simple-query protocol waits in every append
my $a2 = stat_value($node, 'appends');
fsync_fault_on($stall);
my $psql = $node->background_psql('postgres');
$psql->query_until(qr/started/,
	"\\echo started\nSELECT fleetlm.append('sp-3', 'u-3', 'text', '{\"q\": 1}'); SELECT fleetlm.append('sp-3', 'u-3', 'text', '{\"q\": 2}');\n");
# (the backend leads the flush round itself: it is stuck in fdatasync)
ok(poll_true("appends - $a2 = 1 FROM fleetlm.stat"), 'the first append of the simple query ran');
sleep 1;
is($node->safe_psql('postgres', "SELECT state FROM pg_stat_activity WHERE query LIKE 'SELECT fleetlm.append(''sp-3''%'"),
	'active', 'and it is still running: it waits for durability');
is(stat_value($node, 'appends') - $a2, 1, 'the second statement has not run');
fsync_fault_off($stall);
$psql->quit;
ok(poll_true("fleetlm.last_seq('sp-3') = 2"), 'then both appends ran');

# 4. no stall: fifty appends 2 ms apart, every seq, nothing early
($h, $in, $out, $err) = start_client('sp-4', 'u-4', 50, 2, 0);
$h->finish;
is_deeply(rows_of($out), [ 1 .. 50 ], 'a slow pipeline of 50 appends gets its 50 seqs in order');
unlike($$out, qr/^EARLY$/m, 'and no result before its Sync');
is($$err, '', 'and no error');
is($node->safe_psql('postgres', "SELECT count(*) FROM fleetlm.messages('sp-4', 0, 100)"), '50',
	'the 50 messages read back');

$node->stop;
done_testing();

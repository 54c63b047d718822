# 023_pipeline_escape.pl: a pipelined append's seq reaches nothing that
# outlives a crash before its message is durable.  With fdatasync stalled
# (an LD_PRELOAD shim):
#  - a transaction that stored a deferred seq (INSERT ... SELECT append, a
#    CTE) is not committed (not visible to another connection) until the
#    message is durable: the wait is settled at pre-commit;
#  - a NOTICE and an ERROR in the middle of a pipeline reach the client
#    only after the appends before them are durable, in order;
#  - pg_terminate_backend and a crash of another backend while a wait is
#    owed end the backend at once, with no result sent and no hang;
#  - a cancel of the wait at commit rolls the transaction back; a cancel
#    of the wait in the communication layer closes the connection with
#    an error saying why.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use FleetlmTest;

my $client = build_pipeline_client();
plan skip_all => 'cannot build the libpq pipeline client' unless defined $client;
my $stall = fsync_shim('STALL');
plan skip_all => 'no C compiler to build the fdatasync shim' unless defined $stall;
my $dir = PostgreSQL::Test::Utils::tempdir();

my $node = fleetlm_node('escape');
create_sessions($node, 'pe', 5);
fleet_query($node, 'CREATE TABLE audit (tag text, seq bigint)');

# Run statements through the pipelined client in report mode.
my $n = 0;
sub start_client
{
	my ($depth, @stmts) = @_;
	$n++;
	open my $fh, '>', "$dir/c$n.sql" or die $!;
	print $fh "$_\n" for @stmts;
	close $fh;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start([ $client, $node->connstr('postgres'), "$dir/c$n.sql", $depth, 'report' ],
		'>', \$out, '2>', \$err, IPC::Run::timeout(120));
	return ($h, \$out, \$err);
}

sub append_sql
{
	my ($s, $tag) = @_;
	return "fleetlm.append('$s', 'u-1', 'text', '{\"m\": \"$tag\"}')";
}

# 1. INSERT ... SELECT append, then SELECT 1, then Sync: the INSERT commits
#    at Sync, which must wait for the append's fsync.
fsync_fault_on($stall);
my ($h, $out, $err) = start_client(3,
	'INSERT INTO audit SELECT \'insert\', ' . append_sql('pe-1', 'a1'),
	'WITH s AS (SELECT ' . append_sql('pe-1', 'a2') . ' AS seq) INSERT INTO audit SELECT \'cte\', seq FROM s',
	'SELECT 1');
sleep 2;
$h->pump_nb;
is(fleet_query($node, 'SELECT count(*) FROM audit'), '0',
	'a transaction holding pipelined seqs is not committed while they are not durable');
is($$out, '', 'and the client has received nothing');
fsync_fault_off($stall);
$h->finish;
is($$out, "CMD INSERT 0 1\nCMD INSERT 0 1\nROW 1\nSYNC\n", 'once durable, the results arrive');
is($$err, '', 'no client error');
is(fleet_query($node, "SELECT string_agg(tag || '=' || seq, ',' ORDER BY seq) FROM audit"),
	'insert=1,cte=2', 'the committed seqs are the durable messages');
is(fleet_query($node, "SELECT string_agg(content->>'m', ',' ORDER BY seq) FROM fleetlm.messages('pe-1')"),
	'a1,a2', 'and those messages exist');

# 2. a NOTICE in the middle of a pipeline: held back behind the deferred
#    append until it is durable, then everything arrives in order
fsync_fault_on($stall);
($h, $out, $err) = start_client(3,
	'SELECT ' . append_sql('pe-2', 'n1'),
	q{DO $$BEGIN RAISE NOTICE 'hello from the pipeline'; END$$},
	'SELECT ' . append_sql('pe-2', 'n2'));
sleep 2;
$h->pump_nb;
is($$out, '', 'a NOTICE does not carry a non-durable result out early');
fsync_fault_off($stall);
$h->finish;
is($$out, "ROW 1\nNOTICE NOTICE hello from the pipeline\nCMD DO\nROW 2\nSYNC\n",
	'results and the notice arrive in order once durable');

# 3. an ERROR in the middle of a pipeline
fsync_fault_on($stall);
($h, $out, $err) = start_client(3,
	'SELECT ' . append_sql('pe-3', 'e1'),
	'SELECT 1/0',
	'SELECT ' . append_sql('pe-3', 'e2'));
sleep 2;
$h->pump_nb;
is($$out, '', 'an ERROR does not carry a non-durable result out early');
fsync_fault_off($stall);
$h->finish;
is($$out, "ROW 1\nERROR 22012 division by zero\nABORTED\nSYNC\n",
	'the append result, then the error, then the rest aborted');
is(fleet_query($node, "SELECT string_agg(content->>'m', ',' ORDER BY seq) FROM fleetlm.messages('pe-3')"),
	'e1', 'the acknowledged append is durable, the skipped one never ran');

# Stall the disk with the WAL writer inside the stalled fdatasync (holding
# write_lock), so that a backend can only wait, never lead a round: a
# process inside fdatasync itself cannot be stopped by anything.
sub stall_in_writer
{
	fsync_fault_on($stall);
	fleet_query($node, "SET fleetlm.synchronous_append = off; SELECT " . append_sql('pe-2', 'async'));
	$node->poll_query_until('postgres', 'SELECT durable_lsn < inserted_lsn FROM fleetlm.stat')
	  or die 'no async append pending';
	sleep 1;
}

# The backend of a client whose appends are stuck behind the stalled disk.
sub stuck_backend
{
	my ($tag) = @_;
	my $pid;
	$node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE '%$tag%' AND query NOT LIKE '%pg_stat_activity%' AND wait_event_type = 'Extension'")
	  or die "no backend waits for $tag";
	return fleet_query($node,
		"SELECT pid FROM pg_stat_activity WHERE query LIKE '%$tag%' AND query NOT LIKE '%pg_stat_activity%'");
}

sub wait_exit
{
	my ($pid, $what) = @_;
	my $t0 = time;
	while (time - $t0 < 10)
	{
		last unless kill(0, $pid);
		usleep(50_000);
	}
	my $took = time - $t0;
	ok(!kill(0, $pid), sprintf('%s: the backend exited (%.1f s) although the disk is stalled', $what, $took));
	cmp_ok($took, '<', 5, "$what: it did not wait for the disk");
}

# 4. pg_terminate_backend while appends are owed: the backend exits at
#    once, sends no result, and warns that the messages may still land
stall_in_writer();
($h, $out, $err) = start_client(3,
	map { 'SELECT ' . append_sql('pe-4', "term$_") } 1 .. 3);
my $pid = stuck_backend('term');
fleet_query($node, "SELECT pg_terminate_backend($pid)");
wait_exit($pid, 'pg_terminate_backend');
$h->finish;
unlike($$out, qr/^ROW/m, 'no result of a non-durable append reached the client');
like($$out, qr/terminating connection due to administrator command|LOST/,
	'the client learns that the connection was terminated');
fsync_fault_off($stall);
$node->poll_query_until('postgres', "SELECT fleetlm.last_seq('pe-4') = 3")
  or die 'the terminated appends did not become durable';
ok($node->log_contains(qr/the wait for durability of fleetlm messages|canceled the wait for durability/),
	'the server log says the messages may still become durable');

# 5. a crash of another backend (SIGQUIT to everyone) while appends are
#    owed: the quitting backend neither waits nor sends a result
stall_in_writer();
($h, $out, $err) = start_client(3,
	map { 'SELECT ' . append_sql('pe-4', "quit$_") } 1 .. 3);
$pid = stuck_backend('quit');
my $victim = $node->background_psql('postgres');
my $vpid = $victim->query_safe('SELECT pg_backend_pid()');
$vpid =~ s/\D//g;
kill 'KILL', $vpid;
wait_exit($pid, 'crash of another backend');
$h->finish;
unlike($$out, qr/^ROW/m, 'no result reached the client of the quitting backend');
eval { $victim->quit; };
fsync_fault_off($stall);
$node->poll_query_until('postgres', 'SELECT true') or die 'server did not restart';
wait_ready($node);
cmp_ok(fleet_query($node, "SELECT fleetlm.last_seq('pe-4')"), '>=', 3,
	'the server restarted and the earlier acknowledged messages are there');

# 6. a cancel of the wait at commit: the transaction rolls back, so the
#    seq it stored is never committed; the results held back are not
#    sent, the client gets the error (and a warning that the message may
#    still become durable)
stall_in_writer();
($h, $out, $err) = start_client(2,
	'INSERT INTO audit SELECT \'cancelled\', ' . append_sql('pe-5', 'c1'),
	"SELECT 'cancelcommit'");
$pid = stuck_backend('cancelcommit');
fleet_query($node, "SELECT pg_cancel_backend($pid)");
$h->finish;
is($$out, "NOTICE WARNING canceled the wait for durability of pipelined fleetlm appends\n"
	  . "ERROR 57014 canceling statement due to user request\nABORTED\nSYNC\n",
	'a cancelled commit wait: a warning, the error, the rest of the pipeline aborted');
fsync_fault_off($stall);
$node->poll_query_until('postgres', "SELECT fleetlm.last_seq('pe-5') = 1")
  or die 'the message did not become durable';
is(fleet_query($node, "SELECT count(*) FROM audit WHERE tag = 'cancelled'"), '0',
	'the transaction that stored the seq was rolled back');

# 7. a cancel while output waits in the communication layer (a NOTICE
#    behind a deferred append): the output cannot be delivered, so the
#    connection is closed with an error that says so
stall_in_writer();
($h, $out, $err) = start_client(3,
	'SELECT ' . append_sql('pe-5', 'c2'),
	q{DO $$BEGIN RAISE NOTICE 'cancelnotice'; PERFORM pg_sleep(0.1); END$$},
	'SELECT ' . append_sql('pe-5', 'c3'));
$pid = stuck_backend('cancelnotice');
fleet_query($node, "SELECT pg_cancel_backend($pid)");
wait_exit($pid, 'cancel in the communication layer');
$h->finish;
unlike($$out, qr/^ROW/m, 'no result of a non-durable append reached the client');
like($$out, qr/ERROR 57014 canceling the wait for durability of pipelined fleetlm appends/,
	'the client is told why its connection was closed');
fsync_fault_off($stall);

diag("023_pipeline_escape: faults=7 (stalled fdatasync around pipelined commits, notices, errors, termination and a crash), early results=0, early commits=0");
$node->stop;
done_testing();

# 042_ring_reads.pl: reads of applied messages served from the ring.
#
# The applier moves records into fleetlm.messages, but their bytes stay in
# the shared ring until inserts wrap around it (src/ring.h, "Applied records
# stay in the ring"); messages() reads them there without the table.  With
# the smallest ring (fleetlm.wal_buffers = 1MB):
#
#   1. after flush() (every record applied) a read of a session is served
#      by the ring alone (stat reads_ring), and returns exactly the table's
#      rows;
#   2. once other sessions' appends have wrapped the ring, the same reads
#      go to the table (stat reads_table) and still return the table's
#      rows;
#   3. while two writers keep wrapping the ring, a reader reads the last
#      60 messages of a session that is being appended to; the oldest of
#      them are overwritten during the reads.  Every read must equal the
#      table's rows for the same range afterwards: a copy of overwritten
#      bytes that was not detected would show as a different row.
#
# A reader detects overwritten bytes by the header checks of
# ring_chain_next (the header names its own position, a plausible length,
# an older predecessor), by the seqs running down by one (read.c), and by
# FleetShared->reserved after the copy.  With all of them removed this test
# fails (the server hangs on a garbage chain); with `reserved`, the
# position and the predecessor checks removed, the length check alone still
# caught the overwrites of parts 2 and 3 (both tried).  An insert that
# overwrites only a record's body while a reader copies it is a narrow
# race that this test does not force; `reserved` is what catches it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use FleetlmTest;

my $node = fleetlm_node('ringreads',
	'fleetlm.wal_buffers' => '1MB',
	'fleetlm.flush_interval' => '10ms');
create_sessions($node, 'rr', 3);
is(stat_value($node, 'ring_size'), 1024 * 1024, 'the ring is 1 MB');

# the rows of a range, as text, in one digest: ring and table must agree
sub digest_of
{
	my ($from) = @_;
	return "SELECT md5(string_agg(m.session_id || '|' || m.seq || '|' || m.sender_id || '|'"
	  . " || coalesce(m.recipient_id, '-') || '|' || m.kind || '|' || m.content::text"
	  . " || '|' || m.metadata::text || '|' || m.inserted_at || '|'"
	  . " || coalesce(m.idempotency_key, '-'), ',' ORDER BY m.seq)) || ' ' || count(*)"
	  . " FROM $from";
}

sub reads
{
	return split /\|/,
	  fleet_query($node, 'SELECT reads_ring || \'|\' || reads_table FROM fleetlm.stat');
}

# 1. 200 messages, applied, read back from the ring
fleet_query($node,
	"SELECT count(fleetlm.append('rr-1', 'u-1', 'text',"
	  . " jsonb_build_object('n', g, 'pad', repeat('a', 150)),"
	  . " idempotency_key => 'k' || g)) FROM generate_series(1, 200) g");
fleet_query($node, 'SELECT fleetlm.flush()');
is(fleet_query($node, 'SELECT ring_used FROM fleetlm.stat'), '0',
	'every record is applied');
my $table_all = fleet_query($node,
	digest_of("fleetlm.messages m WHERE m.session_id = 'rr-1'"));
like($table_all, qr/ 200$/, 'the table holds the 200 messages');

my ($ring0, $table0) = reads();
is(fleet_query($node, digest_of("fleetlm.messages('rr-1', 0, 200) m")),
	$table_all, 'a read of all 200 applied messages equals the table');
is( fleet_query($node, digest_of("fleetlm.messages('rr-1', 150, 20) m")),
	fleet_query($node,
		digest_of("fleetlm.messages m WHERE m.session_id = 'rr-1' AND m.seq BETWEEN 151 AND 170")),
	'a read of seqs 151..170 equals the table');
my ($ring1, $table1) = reads();
is($ring1 - $ring0, 2, 'both reads were served by the ring');
is($table1 - $table0, 0, 'neither read touched the table');

# 2. 1.5 MB of other appends wrap the ring: the same read needs the table
fleet_query($node,
	"SET fleetlm.synchronous_append = off;"
	  . " SELECT count(fleetlm.append('rr-3', 'u-3', 'text',"
	  . " jsonb_build_object('n', g, 'pad', repeat('b', 400)))) FROM generate_series(1, 3000) g;"
	  . " SELECT fleetlm.flush();");
is(fleet_query($node, digest_of("fleetlm.messages('rr-1', 0, 200) m")),
	$table_all, 'after the ring wrapped, the read still equals the table');
my ($ring2, $table2) = reads();
is($ring2 - $ring1, 0, 'the read was not served by the ring');
is($table2 - $table1, 1, 'the read went to the table');

# 3. reads at the edge of the ring while two writers wrap it again and again
fleet_query($node, 'CREATE TABLE ring_check (after_seq bigint, n bigint, got text)');
fleet_query($node,
	"SELECT count(fleetlm.append('rr-2', 'u-2', 'text', jsonb_build_object('n', -g)))"
	  . " FROM generate_series(1, 60) g");
my $dir = PostgreSQL::Test::Utils::tempdir();
my @writers;
my %scripts = (
	# the session being read: ~3.3 kB a message
	hot => "SELECT count(fleetlm.append('rr-2', 'u-2', 'text',"
	  . " jsonb_build_object('n', g, 'pad', repeat(md5(g::text), 100))))"
	  . " FROM generate_series(1, 1500) g;\n",
	# another session, without waiting for fsyncs: ~8 kB a message
	filler => "SET fleetlm.synchronous_append = off;\n"
	  . "SELECT count(fleetlm.append('rr-3', 'u-3', 'text',"
	  . " jsonb_build_object('n', g, 'pad', repeat(md5(g::text), 250))))"
	  . " FROM generate_series(1, 2500) g;\n");
for my $w (sort keys %scripts)
{
	open my $fh, '>', "$dir/$w.sql" or die $!;
	print $fh $scripts{$w};
	close $fh;
	push @writers,
	  [ $w, IPC::Run::start(
			[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'),
				'-f', "$dir/$w.sql" ],
			'>', "$dir/$w.out", '2>', "$dir/$w.err", IPC::Run::timeout(300)) ];
}
my $reader_sql = <<'EOF';
DO $$
DECLARE
	a bigint;
	d text;
	n bigint;
BEGIN
	FOR i IN 1 .. 3000 LOOP
		a := greatest(fleetlm.last_seq('rr-2') - 60, 0);
		SELECT md5(string_agg(m.session_id || '|' || m.seq || '|' || m.sender_id || '|'
				|| coalesce(m.recipient_id, '-') || '|' || m.kind || '|' || m.content::text
				|| '|' || m.metadata::text || '|' || m.inserted_at || '|'
				|| coalesce(m.idempotency_key, '-'), ',' ORDER BY m.seq)) || ' ' || count(*),
			   count(*)
		  INTO d, n FROM fleetlm.messages('rr-2', a, 60) m;
		INSERT INTO ring_check VALUES (a, n, d);
	END LOOP;
END
$$;
EOF
my ($ring3, $table3) = reads();
my ($rout, $rerr) = ('', '');
IPC::Run::run([ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres') ],
	'<', \$reader_sql, '>', \$rout, '2>', \$rerr, IPC::Run::timeout(300));
is($rerr, '', 'the reader saw no error');
my ($ring4, $table4) = reads();
for my $w (@writers)
{
	my ($name, $h) = @$w;
	ok($h->finish, "writer $name exited 0");
	is(slurp_file("$dir/$name.err"), '', "writer $name printed nothing on stderr");
}
note('the reader: ' . ($ring4 - $ring3) . ' reads from the ring, '
	  . ($table4 - $table3) . ' from the table');
ok($ring4 - $ring3 > 0, 'some reads under load were served by the ring');

fleet_query($node, 'SELECT fleetlm.flush()');
is(fleet_query($node, 'SELECT count(*) FROM ring_check'), '3000', 'the reader made 3000 reads');
my $bad = fleet_query($node,
	"SELECT count(*) FROM ring_check c WHERE c.got IS DISTINCT FROM"
	  . " (" . digest_of("fleetlm.messages m WHERE m.session_id = 'rr-2'"
		  . " AND m.seq > c.after_seq AND m.seq <= c.after_seq + c.n") . ")");
is($bad, '0', 'every read under load equals the table rows of its range');
is(fleet_query($node, "SELECT count(*) FROM ring_check WHERE got NOT LIKE '% 60'"), '0',
	'every read under load returned 60 messages');

$node->stop;
done_testing();

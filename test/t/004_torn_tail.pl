# 004_torn_tail.pl: a torn or overwritten last record is the end of the
# log; recovery says where and why, and appends continue with the right seq.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Fcntl qw(SEEK_SET);
use FleetlmTest;

# the applier idles for a minute, so the records stay unapplied in the WAL
my $node = fleetlm_node('torn', 'fleetlm.flush_interval' => '60s');
my $segsize = 1024 * 1024;

# Append n messages; return [start, end) of the last one's record.
sub append_n
{
	my ($s, $n, $tag) = @_;
	my ($start, $end);
	for my $i (1 .. $n)
	{
		$start = stat_value($node, 'inserted_lsn');
		fleet_query($node,
			"SELECT fleetlm.append('$s', 'u-1', 'text', '{\"m\": \"$tag-$i\"}')");
		$end = stat_value($node, 'inserted_lsn');
	}
	return ($start, $end);
}

# Overwrite bytes [from, to) of the log with $byte (a code ref per offset).
sub scribble
{
	my ($from, $to, $gen) = @_;
	my $seg = $from - $from % $segsize;
	my $file = sprintf('%s/%016X', wal_dir($node), $seg);
	open my $fh, '+<', $file or die "$file: $!";
	binmode $fh;
	seek($fh, $from - $seg, SEEK_SET);
	print $fh join('', map { $gen->($_) } 0 .. ($to - $from - 1));
	close $fh;
	return;
}

my $s = create_sessions($node, 'tt', 1)->[0];

# 1. the second half of the last record is zeroes (a torn write)
my ($start, $end) = append_n($s, 20, 'a');
is(fleet_query($node, "SELECT count(*) FROM fleetlm.messages WHERE session_id = '$s'"),
	'0', 'records are not applied yet');
$node->stop('immediate');
my $mid = $start + int(($end - $start) / 2);
scribble($mid, $end, sub { "\0" });
$node->start;
wait_ready($node);
ok($node->log_contains(qr/log ends at position $start .*: (CRC mismatch|invalid record header)/),
	'recovery ends the log at the torn record and says why');
is(fleet_query($node, "SELECT fleetlm.last_seq('$s')"), '19', 'last_seq is that of the last valid record');
is(fleet_query($node, "SELECT fleetlm.append('$s', 'u-1', 'text', '{\"m\": \"a-next\"}')"),
	'20', 'the next append takes seq 20');
is(fleet_query($node, "SELECT string_agg(content->>'m', ',' ORDER BY seq) FROM fleetlm.messages('$s', 17)"),
	'a-18,a-19,a-next', 'the torn message is gone, the new one follows');

# 2. garbage over the whole last record
$node->rotate_logfile;
$node->restart;
wait_ready($node);
($start, $end) = append_n($s, 5, 'b');
$node->stop('immediate');
scribble($start, $end, sub { chr(int(rand(256))) });
$node->start;
wait_ready($node);
ok($node->log_contains(qr/log ends at position $start /), 'recovery ends the log at the garbage');
is(fleet_query($node, "SELECT fleetlm.last_seq('$s')"), '24', 'last_seq is that of the last valid record');
is(fleet_query($node, "SELECT fleetlm.append('$s', 'u-1', 'text', '{\"m\": \"b-next\"}')"),
	'25', 'the next append takes seq 25');

# 3. the segment file itself cut in the middle of the last record
$node->rotate_logfile;
$node->restart;
wait_ready($node);
($start, $end) = append_n($s, 5, 'c');
$node->stop('immediate');
{
	my $seg = $start - $start % $segsize;
	my $file = sprintf('%s/%016X', wal_dir($node), $seg);
	truncate($file, $start - $seg + 10) or die "truncate: $!";
}
$node->start;
wait_ready($node);
ok($node->log_contains(qr/log ends at position $start /), 'recovery ends the log where the file was cut');
is(fleet_query($node, "SELECT fleetlm.last_seq('$s')"), '29', 'last_seq is that of the last valid record');
is(fleet_query($node, "SELECT fleetlm.append('$s', 'u-1', 'text', '{\"m\": \"c-next\"}')"),
	'30', 'the next append takes seq 30');

# everything survives one more clean restart, gapless
$node->restart;
wait_ready($node);
fleet_query($node, 'SELECT fleetlm.flush()');
is(fleet_query($node, "SELECT count(*), min(seq), max(seq) FROM fleetlm.messages WHERE session_id = '$s'"),
	'30|1|30', '30 messages, seqs 1..30');
diag("004_torn_tail: faults=3 (torn, garbage, cut file), acknowledged checked=30, lost=0 beyond the 3 damaged records");
$node->stop;
done_testing();

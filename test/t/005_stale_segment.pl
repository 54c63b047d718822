# 005_stale_segment.pl: segments below the applied position are recycled
# into future segments, so the bytes past the end of the log are old
# records.  Recovery must never replay them.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Fcntl qw(SEEK_SET);
use FleetlmTest;

my $node = fleetlm_node('stale');
my $segsize = 1024 * 1024;
my $s = create_sessions($node, 'st', 1)->[0];
my $pad = 'p' x 900;
my $appended = 0;

# header of the record-sized bytes at log position $pos, from the files
sub header_at
{
	my ($pos) = @_;
	my $seg = $pos - $pos % $segsize;
	my $file = sprintf('%s/%016X', wal_dir($node), $seg);
	open my $fh, '<', $file or return;
	binmode $fh;
	seek($fh, $pos - $seg, SEEK_SET);
	read($fh, my $buf, 64);
	close $fh;
	my ($len, $crc, $lsn) = unpack('L L Q', $buf);
	return ($len, $lsn);
}

sub bulk
{
	my ($n) = @_;
	fleet_query($node, "SET fleetlm.synchronous_append = off;
		SELECT count(fleetlm.append('$s', 'u-1', 'text',
			jsonb_build_object('m', 'bulk-' || ($appended + i), 'pad', '$pad')))
		FROM generate_series(1, $n) i;
		SELECT fleetlm.flush();");
	$appended += $n;
	return;
}

# write until the segment we write into is a recycled one: the bytes past
# the end of the log are then an old record, with an old position
my ($len, $lsn, $end);
for my $round (1 .. 20)
{
	bulk(1500);
	$end = stat_value($node, 'inserted_lsn');
	($len, $lsn) = header_at($end);
	last if defined $len && $len > 0 && $lsn != $end;
}
ok(defined $len && $len > 0 && $lsn != $end,
	"bytes past the end ($end) are a stale record of position " . ($lsn // 'none'));
cmp_ok(scalar(segment_files($node)), '<=', 6, 'old segments are recycled or removed, not kept');

# stop the applier from applying, append a few durable messages, crash
$node->append_conf('postgresql.conf', "fleetlm.flush_interval = '60s'\n");
$node->reload;
sleep 1;
my $before = stat_value($node, 'applied_lsn');
for my $i (1 .. 3)
{
	fleet_query($node, "SELECT fleetlm.append('$s', 'u-1', 'text', '{\"m\": \"last-$i\"}')");
}
$appended += 3;
$end = stat_value($node, 'inserted_lsn');
($len, $lsn) = header_at($end);
ok($len > 0 && $lsn != $end, 'after the last record, a stale record follows');
$node->stop('immediate');
$node->start;
wait_ready($node);

ok($node->log_contains(qr/log ends at position $end .*stale record of position $lsn/),
	'recovery stopped at the stale record and said so');
ok($node->log_contains(qr/replayed 3 records/), 'recovery replayed the 3 unapplied records');
fleet_query($node, 'SELECT fleetlm.flush()');
is(fleet_query($node, "SELECT count(*), count(DISTINCT content->>'m'), min(seq), max(seq) FROM fleetlm.messages WHERE session_id = '$s'"),
	"$appended|$appended|1|$appended", "exactly the $appended appended messages, no stale one replayed");
is(fleet_query($node, "SELECT fleetlm.append('$s', 'u-1', 'text', '{\"m\": \"after\"}')"),
	$appended + 1, 'appends continue with the next seq');
diag("005_stale_segment: faults=1 (crash over recycled segment), acknowledged checked=$appended, lost=0");
$node->stop;
done_testing();

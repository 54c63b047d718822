# 011_corruption.pl: a flipped byte in an earlier, unapplied record (not the
# tail).  Recovery ends the log at the damaged record, logs a WARNING naming
# the segment and offset, keeps a copy of the segment, and the server comes
# up; the records after it are discarded (README: "Corruption before the
# end"), and appends continue from the last valid seq.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Fcntl qw(SEEK_SET);
use FleetlmTest;

my $node = fleetlm_node('corrupt', 'fleetlm.flush_interval' => '60s');
my $segsize = 1024 * 1024;
my $s = create_sessions($node, 'co', 1)->[0];

fleet_query($node, "SELECT fleetlm.append('$s', 'u-1', 'text', jsonb_build_object('m', 'applied-' || i)) FROM generate_series(1, 5) i");
fleet_query($node, 'SELECT fleetlm.flush()');

# ten unapplied records; remember where the 4th starts
my @starts;
for my $i (1 .. 10)
{
	push @starts, stat_value($node, 'inserted_lsn');
	fleet_query($node, "SELECT fleetlm.append('$s', 'u-1', 'text', '{\"m\": \"wal-$i\"}')");
}
my $bad = $starts[3];    # seq 9
$node->stop('immediate');

# flip one byte inside the 4th record's payload
my $seg = $bad - $bad % $segsize;
my $segname = sprintf('%016X', $seg);
my $file = wal_dir($node) . "/$segname";
open my $fh, '+<', $file or die $!;
binmode $fh;
seek($fh, $bad - $seg + 70, SEEK_SET);
read($fh, my $byte, 1);
seek($fh, $bad - $seg + 70, SEEK_SET);
print $fh chr(ord($byte) ^ 0x5a);
close $fh;

$node->start;
wait_ready($node);
my $offset = $bad - $seg;
ok($node->log_contains(qr/WARNING:  fleetlm WAL is corrupt in segment "fleetlm_wal\/$segname" at offset $offset: CRC mismatch/),
	'a WARNING names the segment and the offset');
ok($node->log_contains(qr/recovery ends the log at position $bad and discards every record after it/),
	'and says the later records are discarded');
opendir my $d, wal_dir($node) or die $!;
my @copies = grep { /^$segname\.corrupt\./ } readdir $d;
closedir $d;
is(scalar(@copies), 1, 'a copy of the corrupt segment is kept');

is(fleet_query($node, "SELECT fleetlm.last_seq('$s')"), '8', 'the log ends before the damaged record (seq 9)');
is(fleet_query($node, "SELECT string_agg(content->>'m', ',' ORDER BY seq) FROM fleetlm.messages('$s', 5)"),
	'wal-1,wal-2,wal-3', 'the records before it were replayed');
is(fleet_query($node, "SELECT fleetlm.append('$s', 'u-1', 'text', '{\"m\": \"new\"}')"), '9',
	'appends continue with seq 9');
$node->restart;
wait_ready($node);
fleet_query($node, 'SELECT fleetlm.flush()');
is(fleet_query($node, "SELECT count(*), max(seq) FROM fleetlm.messages WHERE session_id = '$s'"), '9|9',
	'after another restart: seqs 1..9, gapless, no stale record replayed');
diag("011_corruption: faults=1 (flipped byte), acknowledged checked=15, lost=7 by design (the damaged record and the 6 after it; see README)");
$node->stop;
done_testing();

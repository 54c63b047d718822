# 022_segment_hole.pl: a missing or cut-short segment in the middle of the
# WAL is a hole, not the end of the log.  With valid records after it,
# recovery refuses to start (57P03, the detail names the segment), logs why
# and changes no file; once the segment is back, every acknowledged message
# is there.  Also: temporary files left by a crash are removed at startup.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Digest::SHA;
use File::Copy qw(copy move);
use Time::HiRes qw(usleep);
use FleetlmTest;

my $segsize = 1024 * 1024;
my $node = fleetlm_node('hole',
	'fleetlm.wal_segment_size' => '1MB',
	'fleetlm.wal_buffers' => '16MB');
my $sessions = create_sessions($node, 'sh', 4);
my $s = $sessions->[0];
my $aside = PostgreSQL::Test::Utils::tempdir();
my (@acked_all, %sent_all);

# name => sha256 of every file in the WAL directory
sub wal_files
{
	my %sum;
	opendir my $d, wal_dir($node) or die $!;
	for my $f (grep { !/^\.\.?$/ } readdir $d)
	{
		$sum{$f} = Digest::SHA->new(256)->addfile(wal_dir($node) . "/$f", 'b')->hexdigest;
	}
	closedir $d;
	return \%sum;
}

# Append about 3.4 MB while the applier is held back by a lock, so that
# several segments hold acknowledged, unapplied records; then crash.
# Returns the name of a segment with unapplied records on both sides, the
# acknowledged appends and the sent ones (as finish_load), and the applied
# position: where the first of these records starts.
sub fill_and_crash
{
	my ($tag) = @_;
	fleet_query($node, 'SELECT fleetlm.flush()');
	my $locker = $node->background_psql('postgres');
	$locker->query_safe('BEGIN; LOCK TABLE fleetlm.messages IN SHARE MODE;');
	my $load = start_load($node, sessions => $sessions, clients => 4,
		per_client => 400, pad => 2000, tag => $tag);
	my ($acked, $sent) = finish_load($load);
	is(scalar(@$acked), 1600, "$tag: 1600 appends acknowledged");

	my $applied = stat_value($node, 'applied_lsn');
	my $durable = stat_value($node, 'durable_lsn');
	my $middle = $applied - $applied % $segsize + $segsize;
	cmp_ok($durable, '>', $middle + $segsize + 64,
		"$tag: unapplied records before and after segment $middle");
	$node->stop('immediate');
	eval { $locker->quit; };
	return (sprintf('%016X', $middle), $acked, $sent, $applied);
}

# Remember a load's appends for verify_acked.
sub keep_acked
{
	my ($acked, $sent) = @_;
	push @acked_all, @$acked;
	%sent_all = (%sent_all, %$sent);
	return;
}

# Poll an append with a short fleetlm.startup_timeout until it fails with a
# detail that names $name; returns psql's stderr of that attempt.
sub refused_append
{
	my ($name) = @_;
	my $err = '';
	for my $try (1 .. 30)
	{
		my ($ret, $out);
		($ret, $out, $err) = $node->psql('postgres',
			"\\set VERBOSITY verbose\n"
			  . "SET fleetlm.startup_timeout = '1s';\n"
			  . "SELECT fleetlm.append('$s', 'u-1', 'text', '{\"m\": \"refused\"}');");
		return $err if $ret != 0 && $err =~ /DETAIL:.*\Q$name\E/;
		return $err if $ret == 0;
	}
	return $err;
}

# Wait until the applier has refused (and so retried) at least $n times.
sub wait_refusals
{
	my ($re, $n) = @_;
	for my $try (1 .. 300)
	{
		my @hits = (slurp_file($node->logfile) =~ /$re/g);
		return scalar(@hits) if @hits >= $n;
		usleep(100_000);
	}
	return 0;
}

# (a) a missing middle segment
my ($name, $acked, $sent) = fill_and_crash('H1');
keep_acked($acked, $sent);
my $before = wal_files();
move(wal_dir($node) . "/$name", "$aside/$name") or die "move: $!";
delete $before->{$name};
$node->start;

my $err = refused_append($name);
like($err, qr/ERROR:  57P03: fleetlm is not ready/, 'missing segment: an append fails with 57P03');
like($err,
	qr/DETAIL:  .*fleetlm WAL segment "[^"]*\Q$name\E" is missing, but a valid record follows at position \d+/,
	'and the detail names the missing segment and the later record');
isnt(stat_value($node, 'state'), 'ready', 'fleetlm is not ready');
my $refusal = qr/ERROR:  fleetlm WAL segment "fleetlm_wal\/\Q$name\E" is missing, but a valid record follows at position \d+/;
cmp_ok(wait_refusals($refusal, 2), '>=', 2, 'the server log says why, at every retry of the applier');
is_deeply(wal_files(), $before, 'every other WAL file is still there, byte-identical: nothing removed, zeroed or copied');

# put it back: the applier, restarted by the postmaster, now gets through
my $logpos = -s $node->logfile;
move("$aside/$name", wal_dir($node) . "/$name") or die "move back: $!";
wait_ready($node);
ok($node->log_contains(qr/fleetlm recovery complete/, $logpos),
	'recovery completes by itself once the segment is back');
my ($lost, $checked) = verify_acked($node, \@acked_all, \%sent_all, $sessions, 'missing segment restored');

# (b) a middle segment cut short
$node->rotate_logfile;
($name, $acked, $sent) = fill_and_crash('H2');
keep_acked($acked, $sent);
my $file = wal_dir($node) . "/$name";
copy($file, "$aside/$name") or die "copy: $!";
truncate($file, $segsize / 2) or die "truncate: $!";
$before = wal_files();
$node->start;

$err = refused_append($name);
like($err, qr/ERROR:  57P03: fleetlm is not ready/, 'short segment: an append fails with 57P03');
like($err,
	qr/DETAIL:  .*fleetlm WAL segment "[^"]*\Q$name\E" is cut short \(524288 of 1048576 bytes\), but a valid record follows at position \d+/,
	'and the detail names the short segment and the later record');
$refusal = qr/ERROR:  fleetlm WAL segment "fleetlm_wal\/\Q$name\E" is cut short/;
cmp_ok(wait_refusals($refusal, 2), '>=', 2, 'the server log says why');
is_deeply(wal_files(), $before, 'every WAL file is still there, byte-identical, the short one too');

copy("$aside/$name", $file) or die "copy back: $!";
$node->restart;
wait_ready($node);
my ($lost2, $checked2) = verify_acked($node, \@acked_all, \%sent_all, $sessions, 'short segment restored');

# (c) temporary files left by a crash are removed at startup
$node->stop('immediate');
for my $tmp ('segment.tmp.12345', 'CONTROL.tmp')
{
	open my $fh, '>', wal_dir($node) . "/$tmp" or die $!;
	print $fh "\0" x 8192;
	close $fh;
}
$node->start;
wait_ready($node);
ok(!-e wal_dir($node) . '/segment.tmp.12345', 'a leftover segment.tmp.<pid> is removed at startup');
ok(!-e wal_dir($node) . '/CONTROL.tmp', 'and so is a leftover CONTROL.tmp');
ok($node->log_contains(qr/removed temporary file "fleetlm_wal\/segment\.tmp\.12345"/), 'the removal is logged');
my $seq = fleet_query($node, "SELECT fleetlm.append('$s', 'u-1', 'text', '{\"m\": \"after\"}')");
ok($seq > 0, 'appends work afterwards');
push @acked_all, [ $seq, 'after', $s ];
$sent_all{after} = $s;

# (d) corruption before a hole is still corruption, not a quiet end: the
# first unapplied record and the rest of its segment are zeroed and the
# next segment is gone, while valid records follow two segments later.
# Recovery must find them beyond the missing segment: a WARNING, copies of
# the segments, the later records discarded (README, "Corruption before
# the end"), as for corruption inside a segment.
$node->rotate_logfile;
my $applied;
($name, undef, undef, $applied) = fill_and_crash('H3');
my $first = $applied - $applied % $segsize;
my $firstname = sprintf('%016X', $first);
{
	open my $fh, '+<', wal_dir($node) . "/$firstname" or die $!;
	binmode $fh;
	seek($fh, $applied - $first, 0);
	print $fh "\0" x ($segsize - ($applied - $first));
	close $fh;
}
unlink(wal_dir($node) . "/$name") or die "unlink: $!";
$node->start;
wait_ready($node);
my $offset = $applied - $first;
ok($node->log_contains(qr/WARNING:  fleetlm WAL is corrupt in segment "fleetlm_wal\/$firstname" at offset $offset: zeroed space/),
	'zeroed records before a missing segment: a WARNING names the segment and offset');
my ($later) = (slurp_file($node->logfile) =~ /A valid record follows at position (\d+); recovery ends the log at position $applied /);
ok(defined $later && $later >= $first + 2 * $segsize,
	'the valid record it found lies beyond the missing segment (' . ($later // 'none') . ')');
opendir my $d, wal_dir($node) or die $!;
my @copies = sort grep { /\.corrupt\./ } readdir $d;
closedir $d;
is(scalar(@copies), 2, 'copies of the corrupt segment and of the one holding the later record are kept');
my ($lost3, $checked3) = verify_acked($node, \@acked_all, \%sent_all, $sessions,
	'after the corruption, every message before it');

diag("022_segment_hole: faults=4 (missing segment, short segment, leftover temporary files, corruption before a missing segment), acknowledged checked=$checked3, lost=$lost3 (+1600 discarded by design after the corruption)");
$node->stop;
done_testing();

# 007_config.pl: configuration mistakes give clear errors and touch no data:
# no shared_preload_libraries, the wrong database, an impossible message
# size, a changed segment size, a missing WAL directory.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use File::Copy;
use FleetlmTest;

# 1. not preloaded: every function says what to set
{
	my $node = PostgreSQL::Test::Cluster->new('nopreload');
	$node->init;
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION fleetlm');
	for my $call (
		"SELECT fleetlm.create_session('u', 'a')",
		"SELECT fleetlm.append('s', 'u', 'text', '{}')",
		"SELECT * FROM fleetlm.messages('s')",
		"SELECT fleetlm.last_seq('s')",
		"SELECT fleetlm.flush()",
		"SELECT * FROM fleetlm.stat")
	{
		my ($ret, $out, $err) = $node->psql('postgres', $call);
		like($err, qr/fleetlm must be loaded via shared_preload_libraries.*HINT:.*shared_preload_libraries/s,
			"not preloaded: $call fails with a hint");
	}
	$node->stop;
}

# 2. the wrong database
{
	my $node = PostgreSQL::Test::Cluster->new('wrongdb');
	$node->init;
	$node->append_conf('postgresql.conf', "shared_preload_libraries = 'fleetlm'\n"
		  . "fleetlm.database = 'fleetdb'\n");
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION fleetlm');
	my ($ret, $out, $err) = $node->psql('postgres', "SELECT fleetlm.create_session('u', 'a')");
	like($err, qr/fleetlm can only be used in database "fleetdb"/, 'calls from another database name the configured one');
	$node->safe_psql('postgres', 'CREATE DATABASE fleetdb');
	$node->safe_psql('fleetdb', 'CREATE EXTENSION fleetlm');
	$node->poll_query_until('fleetdb', "SELECT state = 'ready' FROM fleetlm.stat")
	  or die 'not ready';
	$node->safe_psql('fleetdb', "SELECT fleetlm.create_session('u', 'a', session_id => 'x')");
	is($node->safe_psql('fleetdb', "SELECT fleetlm.append('x', 'u', 'text', '{}')"), '1',
		'the configured database works once it exists');
	$node->stop;
}

# 3. a message size limit larger than a quarter of the ring: no start
{
	my $node = PostgreSQL::Test::Cluster->new('badsize');
	$node->init;
	$node->append_conf('postgresql.conf', "shared_preload_libraries = 'fleetlm'\n"
		  . "fleetlm.wal_buffers = '1MB'\nfleetlm.max_message_size = '512kB'\n");
	ok(!$node->start(fail_ok => 1), 'server refuses to start');
	ok($node->log_contains(qr/fleetlm.max_message_size \(512 kB\) must be at most a quarter of fleetlm.wal_buffers \(1024 kB\)/),
		'and says why');
}

# 4. a changed segment size, and 5. a missing WAL directory
{
	my $node = fleetlm_node('segsize', 'fleetlm.flush_interval' => '60s',
		'fleetlm.startup_timeout' => '2s');
	fleet_query($node, "SELECT fleetlm.create_session('u', 'a', session_id => 'keep')");
	fleet_query($node, "SELECT fleetlm.append('keep', 'u', 'text', jsonb_build_object('m', i)) FROM generate_series(1, 5) i");
	is(fleet_query($node, "SELECT count(*) FROM fleetlm.messages"), '0', 'five messages only in the WAL');
	$node->stop('immediate');
	my @before = segment_files($node);

	$node->append_conf('postgresql.conf', "fleetlm.wal_segment_size = '2MB'\n");
	$node->start;
	$node->poll_query_until('postgres', "SELECT 1", '1');
	my ($ret, $out, $err) = $node->psql('postgres', "SELECT fleetlm.append('keep', 'u', 'text', '{}')");
	like($err, qr/fleetlm is not ready.*was created with fleetlm.wal_segment_size = 1MB, but it is now 2MB/s,
		'a changed segment size: appends fail, naming both sizes');
	ok($node->log_contains(qr/was created with fleetlm.wal_segment_size = 1MB, but it is now 2MB/),
		'and the log says it');
	is_deeply([ segment_files($node) ], \@before, 'no segment was touched');
	is(fleet_query($node, "SELECT count(*) FROM fleetlm.messages"), '0', 'no message was applied');
	$node->stop('immediate');

	# 5. the WAL directory goes missing
	my $wal = wal_dir($node);
	rename($wal, "$wal.away") or die $!;
	$node->append_conf('postgresql.conf', "fleetlm.wal_segment_size = '1MB'\n");
	$node->start;
	($ret, $out, $err) = $node->psql('postgres', "SELECT fleetlm.append('keep', 'u', 'text', '{}')");
	like($err, qr/fleetlm WAL directory "fleetlm_wal" does not exist/s,
		'a missing WAL directory: appends fail, naming it');
	$node->stop('immediate');
	ok(!-e $wal, 'the missing directory was not recreated');

	# an unreadable WAL directory
	rename("$wal.away", $wal) or die $!;
	chmod 0, $wal or die $!;
	$node->start;
	($ret, $out, $err) = $node->psql('postgres', "SELECT fleetlm.append('keep', 'u', 'text', '{}')");
	like($err, qr/fleetlm WAL directory "fleetlm_wal" is not usable: Permission denied/s,
		'an unreadable WAL directory: appends fail, naming it');
	$node->stop('immediate');
	chmod 0700, $wal or die $!;

	# a WAL directory that is a symbolic link: refused unless allowed
	rename($wal, "$wal.real") or die $!;
	symlink("$wal.real", $wal) or die $!;
	$node->start;
	($ret, $out, $err) = $node->psql('postgres', "SELECT fleetlm.append('keep', 'u', 'text', '{}')");
	like($err, qr/fleetlm WAL directory "fleetlm_wal" is a symbolic link/s,
		'a symlinked WAL directory is refused by default');
	$node->stop('immediate');
	$node->append_conf('postgresql.conf', "fleetlm.allow_wal_symlink = on\n");
	$node->start;
	wait_ready($node);
	ok(1, 'with fleetlm.allow_wal_symlink = on it is followed');
	$node->stop;
	unlink $wal or die $!;
	rename("$wal.real", $wal) or die $!;
	$node->append_conf('postgresql.conf', "fleetlm.allow_wal_symlink = off\n");

	# put it back: everything is there
	$node->start;
	wait_ready($node);
	fleet_query($node, 'SELECT fleetlm.flush()');
	is(fleet_query($node, "SELECT string_agg(seq::text, ',' ORDER BY seq) FROM fleetlm.messages WHERE session_id = 'keep'"),
		'1,2,3,4,5', 'with the right configuration and directory, all five messages are applied');

	# the WAL directory and its files are private to the server user
	my @st = stat($wal);
	is(sprintf('%04o', $st[2] & 07777), '0700', 'the WAL directory is mode 0700');
	is($st[4], $>, 'and owned by the server user');
	opendir my $d, $wal or die $!;
	my @files = grep { !/^\./ } readdir $d;
	closedir $d;
	my @loose = grep { my @f = stat("$wal/$_"); ($f[2] & 07777) != 0600 || $f[4] != $> } @files;
	is_deeply(\@loose, [], 'every file in it (' . scalar(@files) . ') is mode 0600 and owned by the server user');
	$node->stop;
}
diag("007_config: faults=7 configuration mistakes, each a clear error, no data touched (5 messages checked, lost=0)");
done_testing();

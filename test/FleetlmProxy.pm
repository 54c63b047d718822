# test/FleetlmProxy.pm
#
# Helpers of the TAP tests of fleetlm_proxy (030, 031): a coordinator
# whose PL/Proxy cluster fleetlm_cluster names fleetlm nodes (the shards),
# the connection string of a node, and a statement's output or its first
# error with the SQLSTATE and without PL/Proxy's prefix.
package FleetlmProxy;

use strict;
use warnings;

use Exporter 'import';
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Time::HiRes;

our @EXPORT = qw(proxy_node node_connstr result start_waiter $WAITING start_pgbouncer);

# The connection string of $node's database postgres, as a partition
# option names it.
sub node_connstr
{
	my ($node) = @_;
	return 'host=' . $node->host . ' port=' . $node->port . ' dbname=postgres';
}

# A started coordinator $name with plproxy and fleetlm_proxy, and the
# cluster fleetlm_cluster whose partition p is on the node $shards->[p]
# (a power of two of them); user mapping for PUBLIC as the superuser,
# USAGE on the server for fleetlm_reader and fleetlm_admin.
sub proxy_node
{
	my ($name, $shards) = @_;
	my $coord = PostgreSQL::Test::Cluster->new($name);
	$coord->init(extra => [ '--encoding=UTF8', '--locale=C' ]);
	$coord->append_conf('postgresql.conf', "max_connections = 60\n");
	$coord->start;
	my $superuser = $coord->safe_psql('postgres', 'SELECT current_user');
	my $options = join(', ', map { "p$_ '" . node_connstr($shards->[$_]) . "'" } 0 .. $#$shards);
	$coord->safe_psql('postgres', qq{
		CREATE EXTENSION plproxy;
		CREATE EXTENSION fleetlm_proxy;
		CREATE SERVER fleetlm_cluster FOREIGN DATA WRAPPER plproxy OPTIONS ($options);
		CREATE USER MAPPING FOR PUBLIC SERVER fleetlm_cluster OPTIONS (user '$superuser');
		GRANT USAGE ON FOREIGN SERVER fleetlm_cluster TO fleetlm_reader, fleetlm_admin;
	});
	return $coord;
}

# The number of a node's backends waiting in wait_for_messages.
our $WAITING = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
  . " AND wait_event_type = 'Extension' AND query LIKE '%wait_for_messages%'";

# A background psql on $coord (on_error_stop off) that has sent $sql, a
# long-poll of wait_for_messages, and whose call waits on $shard: returns
# once $shard has a backend waiting.
sub start_waiter
{
	my ($coord, $shard, $sql) = @_;
	my $waiter = $coord->background_psql('postgres', on_error_stop => 0);
	$waiter->query_until(qr/started\n/, "\\echo started\n$sql\n");
	$shard->poll_query_until('postgres', "SELECT ($WAITING) > 0")
	  or die "the long-poll did not reach its shard: $sql";
	return $waiter;
}

# A started pgbouncer (Debian pgbouncer) in front of $node's database
# postgres: transaction pooling, at most $pool_size server connections,
# any client user (it logs in as $node's superuser), a Unix socket in a
# new temporary directory.  Returns its connection string and the
# IPC::Run handle (kill_kill stops it); its log is in that directory.
sub start_pgbouncer
{
	my ($node, $pool_size) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $user = $node->safe_psql('postgres', 'SELECT current_user');
	open my $fh, '>', "$dir/pgbouncer.ini" or die "$dir/pgbouncer.ini: $!";
	print $fh "[databases]\n"
	  . "postgres = host=" . $node->host . " port=" . $node->port
	  . " dbname=postgres user=$user pool_size=$pool_size\n"
	  . "[pgbouncer]\n"
	  . "listen_addr =\nunix_socket_dir = $dir\nlisten_port = $port\n"
	  . "auth_type = any\npool_mode = transaction\nmax_client_conn = 200\n"
	  . "ignore_startup_parameters = extra_float_digits,options\n"
	  . "logfile = $dir/pgbouncer.log\npidfile = $dir/pgbouncer.pid\n";
	close $fh;
	my $h = IPC::Run::start([ 'pgbouncer', "$dir/pgbouncer.ini" ],
		'>', "$dir/stdout", '2>', "$dir/stderr");
	my $connstr = "host=$dir port=$port dbname=postgres";
	for my $try (1 .. 100)
	{
		return ($connstr, $h)
		  if IPC::Run::run([ 'psql', '-XAtq', '-d', $connstr, '-c', 'SELECT 1' ],
			'>', \my $out, '2>', \my $err);
		Time::HiRes::usleep(100_000);
	}
	die "pgbouncer did not start: " . PostgreSQL::Test::Utils::slurp_file("$dir/pgbouncer.log");
}

# The output of $q on $node, or "ERROR <SQLSTATE>: <message>" for its
# first error, without PL/Proxy's prefix "<function>(<n>): [<db>] REMOTE
# ERROR: " (%o: role => run as that role).
sub result
{
	my ($node, $q, %o) = @_;
	my $pre = "\\set VERBOSITY verbose\n";
	$pre .= "SET ROLE $o{role};\n" if $o{role};
	my ($rc, $out, $err) = $node->psql('postgres', $pre . $q);
	if ($err =~ /ERROR:  ([0-9A-Z]{5}): (.*)$/m)
	{
		my ($code, $msg) = ($1, $2);
		$msg =~ s/^\S+\(\d+\): \[[^\]]*\] REMOTE ERROR: //;
		return "ERROR $code: $msg";
	}
	die "psql failed without an ERROR: $err" if $rc != 0;
	return $out;
}

1;

# 025_applier_stats.pl: the applier reports its table statistics, so
# autovacuum and autoanalyze see fleetlm.messages (n_tup_ins,
# n_mod_since_analyze, and dead tuples after a deletion); and it runs with
# its own settings, whatever the database defaults say.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(sleep);
use FleetlmTest;

my $node = fleetlm_node('stats', autovacuum => 'off');
create_sessions($node, 'st', 2);
fleet_query($node,
	"SELECT fleetlm.append('st-' || (i % 2 + 1), 'u-1', 'text', '{}') FROM generate_series(1, 300) i");
fleet_query($node, 'SELECT fleetlm.flush()');
ok($node->poll_query_until('postgres',
	"SELECT n_tup_ins >= 300 AND n_mod_since_analyze >= 300 FROM pg_stat_user_tables WHERE relid = 'fleetlm.messages'::regclass"),
	'pg_stat_user_tables counts the rows the applier inserted');

fleet_query($node, "SELECT fleetlm.delete_session('st-1')");
fleet_query($node, 'SELECT fleetlm.flush()');
ok($node->poll_query_until('postgres',
	"SELECT n_tup_del >= 150 AND n_dead_tup >= 150 FROM pg_stat_user_tables WHERE relid = 'fleetlm.messages'::regclass"),
	'and the dead rows its deletion left for vacuum');

# database defaults that would break the applier are overridden
fleet_query($node, "ALTER DATABASE postgres SET statement_timeout = '1ms'");
fleet_query($node, "ALTER DATABASE postgres SET search_path = nowhere");
fleet_query($node, "ALTER DATABASE postgres SET default_transaction_read_only = on");
# our own sessions opt out of the defaults (client options win over
# database defaults, from the first statement on); the applier cannot
sub q_own
{
	my ($sql) = @_;
	local $ENV{PGOPTIONS} = '-c statement_timeout=0 -c default_transaction_read_only=off';
	return fleet_query($node, $sql);
}
my $pid = q_own('SELECT applier_pid FROM fleetlm.stat');
q_own("SELECT pg_terminate_backend($pid)");
my $back = 0;
for (1 .. 100)
{
	$back = q_own("SELECT applier_pid IS NOT NULL AND applier_pid <> $pid FROM fleetlm.stat") eq 't';
	last if $back;
	sleep 0.1;
}
ok($back, 'the applier came back after pg_terminate_backend');
my $out = q_own("SELECT fleetlm.append('st-2', 'u-1', 'text', '{\"m\": \"ro\"}'); SELECT fleetlm.flush();"
	  . " SELECT count(*) FROM fleetlm.messages WHERE content->>'m' = 'ro'");
is((split /\n/, $out)[-1], '1', 'with a read-only, 1 ms statement_timeout database default, the applier still applies');
is(q_own('SELECT applier_errors FROM fleetlm.stat'), '0', 'without a single failed batch');
q_own('ALTER DATABASE postgres RESET ALL');

$node->stop;
done_testing();

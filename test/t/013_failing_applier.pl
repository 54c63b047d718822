# 013_failing_applier.pl: a trigger on fleetlm.messages makes every applier
# batch fail.  The applier rolls back, logs, and retries with a growing
# backoff; appends go on (into the ring) meanwhile; once the trigger is
# dropped everything drains, exactly once.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FleetlmTest;

my $node = fleetlm_node('failing');
my $sessions = create_sessions($node, 'fa', 4);

fleet_query($node, q{
	CREATE FUNCTION public.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		RAISE EXCEPTION 'refused by test trigger';
	END $$;
	CREATE TRIGGER refuse BEFORE INSERT ON fleetlm.messages
		FOR EACH STATEMENT EXECUTE FUNCTION public.refuse();
});

my $load = start_load($node, sessions => $sessions, clients => 4, per_client => 300, tag => 'F');
my ($acked, $sent) = finish_load($load);
is(scalar(@$acked), 1200, 'appends are acknowledged while the applier fails');

$node->poll_query_until('postgres', 'SELECT applier_errors >= 4 FROM fleetlm.stat')
  or die 'the applier did not retry';
is(fleet_query($node, 'SELECT count(*) FROM fleetlm.messages'), '0', 'nothing reached the table');
ok($node->log_contains(qr/WARNING:  fleetlm applier could not apply messages: refused by test trigger/),
	'the failure is logged with its cause');
ok($node->log_contains(qr/retrying in 100 ms/) && $node->log_contains(qr/retrying in 800 ms/),
	'with a growing backoff');
my $total = 0;
$total += fleet_query($node, "SELECT count(*) FROM fleetlm.messages('$_', 0, 100000)") for @$sessions;
is($total, 1200, 'messages() serves every message from the ring meanwhile');

fleet_query($node, 'DROP TRIGGER refuse ON fleetlm.messages');
fleet_query($node, 'SELECT fleetlm.flush()');
ok($node->log_contains(qr/fleetlm applier is applying again/), 'the applier says it recovered');
is(fleet_query($node, 'SELECT count(*) FROM fleetlm.messages'), '1200', 'everything drained into the table');
my ($lost, $checked) = verify_acked($node, $acked, $sent, $sessions, 'after the failures');
my $errors = stat_value($node, 'applier_errors');
diag("013_failing_applier: faults=$errors failed applier batches, acknowledged checked=$checked, lost=$lost");
$node->stop;
done_testing();

# 017_idempotency_race.pl: several backends append with the SAME
# idempotency key to the same session at once.  Each must get the same seq,
# and exactly one message with that key must exist, in messages() and, after
# flush(), in the table.
# 1. With fdatasync stalled (an LD_PRELOAD shim), three keyed appends are in
#    flight together: none returns while stalled, then all return the one
#    seq.  A retry of a key that is durable (in the ring, or in the table)
#    returns at once even while the disk is stalled.
# 2. Without a stall, four psql clients run the same sequence of keys in a
#    tight race (mixed with unkeyed appends), while the applier moves
#    messages into the table every few milliseconds.  Two clients run in
#    step; two lag a few and a few dozen statements behind, so a key is
#    found in the ring, in the table, or while it moves between the two.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);
use FleetlmTest;

my $stall = fsync_shim('STALL');
plan skip_all => 'no C compiler to build the fdatasync shim' unless defined $stall;

my $node = fleetlm_node('idemrace', 'fleetlm.flush_interval' => '60s');
my $sessions = create_sessions($node, 'ir', 4);

sub keyed
{
	my ($s, $key, $m) = @_;
	my $u = $s =~ s/^.*-(\d+)$/u-$1/r;
	return "fleetlm.append('$s', '$u', 'text', '{\"m\": \"$m\"}', idempotency_key => '$key')";
}

# One psql per statement, in the background.
sub start_psql
{
	my ($sql, $timeout) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start([ 'psql', '-XAtq', '-d', $node->connstr('postgres'), '-c', $sql ],
		'>', \$out, '2>', \$err, IPC::Run::timeout($timeout // $PostgreSQL::Test::Utils::timeout_default));
	return { h => $h, out => \$out, err => \$err };
}

sub key_rows
{
	my ($s, $key) = @_;
	return fleet_query($node,
		"SELECT count(*) || ':' || coalesce(min(seq), 0) FROM fleetlm.messages('$s', 0, 100000) WHERE idempotency_key = '$key'");
}

# 1. stalled rounds
my $rounds = 4;
my $stall_ok = 0;
for my $r (1 .. $rounds)
{
	my $s = $sessions->[ $r % 2 ];
	my $key = "stall-$r";
	my $before = fleet_query($node, "SELECT fleetlm.last_seq('$s')");
	fsync_fault_on($stall);
	my @p = map { start_psql('SELECT ' . keyed($s, $key, "$key-c$_")) } 1 .. 3;
	ok($node->poll_query_until('postgres',
			"SELECT count(*) = 3 FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid()"
			  . " AND query LIKE '%idempotency_key => ''$key''%'"),
		"round $r: three appends with key $key are in flight");
	usleep(300_000);
	$_->{h}->pump_nb for @p;
	is(join('', map { ${ $_->{out} } . ${ $_->{err} } } @p), '', "round $r: none returned while fdatasync is stalled");
	is(fleet_query($node, "SELECT fleetlm.last_seq('$s')"), $before, "round $r: nothing durable yet");
	fsync_fault_off($stall);
	$_->{h}->finish for @p;
	my $want = $before + 1;
	is(join(',', map { ${ $_->{out} } =~ s/\n$//r } @p), "$want,$want,$want", "round $r: all three got seq $want");
	is(join('', map { ${ $_->{err} } } @p), '', "round $r: no client error");
	is(key_rows($s, $key), "1:$want", "round $r: messages() holds exactly one message with key $key");
	is(fleet_query($node, "SELECT fleetlm.last_seq('$s')"), $want, "round $r: the session grew by one message");
	$stall_ok++;
}

# retries of durable keys return at once while the disk is stalled: one
# still in the ring, one in the table
{
	my $s = $sessions->[2];
	is(fleet_query($node, 'SELECT ' . keyed($s, 'applied', 'applied-1')), '1', 'a keyed append');
	fleet_query($node, 'SELECT fleetlm.flush()');
	is(fleet_query($node, 'SELECT ' . keyed($s, 'ringed', 'ringed-1')), '2', 'another, left in the ring');
	cmp_ok(stat_value($node, 'applied_lsn'), '<', stat_value($node, 'durable_lsn'), 'the second is not applied');
	fsync_fault_on($stall);
	my $p = start_psql('SELECT ' . keyed($s, 'applied', 'applied-2') . ', ' . keyed($s, 'ringed', 'ringed-2'), 10);
	my $ok = eval { $p->{h}->finish; 1 };
	fsync_fault_off($stall);
	$p->{h}->kill_kill unless $ok;
	ok($ok, 'retries of durable keys do not wait for the stalled disk');
	is(${ $p->{out} }, "1|2\n", 'and return seqs 1 and 2');
	is(${ $p->{err} }, '', 'without error');
}
fleet_query($node, 'SELECT fleetlm.flush()');

# 2. the tight race, the applier running every 5 ms
fleet_query($node, "ALTER SYSTEM SET fleetlm.flush_interval = '5ms'");
fleet_query($node, 'SELECT pg_reload_conf()');
my $nkeys = 800;
my $clients = 4;
my @lag = (0, 0, 0, 4, 40);    # unkeyed appends before the keys, per client
my $batches0 = stat_value($node, 'applier_batches');
my @first = map { fleet_query($node, "SELECT fleetlm.last_seq('$_')") } @$sessions;
my %key_session;
my $load = start_load($node, clients => $clients, tag => 'R',
	statements => sub {
		my ($c) = @_;
		my @st;
		for my $i (1 .. $lag[$c])
		{
			my $s = $sessions->[ $i % @$sessions ];
			my $u = $s =~ s/^.*-(\d+)$/u-$1/r;
			push @st, [ "fleetlm.append('$s', '$u', 'text', '{\"m\": \"plain-lag$i-c$c\"}')", "plain-lag$i-c$c", $s ];
		}
		for my $k (1 .. $nkeys)
		{
			my $s = $sessions->[ $k % @$sessions ];
			$key_session{"race-$k"} = $s;
			push @st, [ keyed($s, "race-$k", "race-$k-c$c"), "race-$k-c$c", $s ];
			# an unkeyed append now and then shifts the seqs between keys
			if (($k + $c) % 7 == 0)
			{
				my $u = $s =~ s/^.*-(\d+)$/u-$1/r;
				push @st, [ "fleetlm.append('$s', '$u', 'text', '{\"m\": \"plain-$k-c$c\"}')", "plain-$k-c$c", $s ];
			}
		}
		return @st;
	});
my ($acked, $sent) = finish_load($load);
my $e = check_client_errors($load, 'keyed race', may_end_early => 0);
is(scalar(@$acked), scalar(keys %$sent), 'every append of the race was acknowledged');

# every client got the same seq for a key
my (%seq_of, $mismatch);
$mismatch = 0;
for my $a (@$acked)
{
	my ($seq, $marker, $s) = @$a;
	next unless $marker =~ /^(race-\d+)-c\d+$/;
	my $key = $1;
	if (exists $seq_of{$key} && $seq_of{$key} != $seq)
	{
		diag("key $key: seq $seq_of{$key} and seq $seq");
		$mismatch++;
	}
	$seq_of{$key} //= $seq;
}
is($mismatch, 0, 'every client got the same seq for the same key');
is(scalar(keys %seq_of), $nkeys, "all $nkeys keys acknowledged");

# messages(): one message per key, at that seq; unkeyed ones once each;
# seqs gapless
my ($dups, $wrong, $gaps, $missing) = (0, 0, 0, 0);
my %plain_acked = map { $_->[1] => "$_->[2] $_->[0]" } grep { $_->[1] =~ /^plain-/ } @$acked;
my %plain_found;
for my $i (0 .. $#$sessions)
{
	my $s = $sessions->[$i];
	my $expect = 1;
	my %keys_here;
	for my $line (split /\n/, fleet_query($node,
			"SELECT seq, coalesce(idempotency_key, ''), content->>'m' FROM fleetlm.messages('$s', 0, 100000) ORDER BY seq"))
	{
		my ($seq, $key, $m) = split /\|/, $line;
		$gaps++, diag("$s: seq $seq where $expect was expected") if $seq != $expect;
		$expect = $seq + 1;
		next if $seq <= $first[$i];
		if ($key ne '')
		{
			$dups++, diag("$s: key $key twice") if $keys_here{$key}++;
			if (!exists $seq_of{$key} || $seq_of{$key} != $seq || $key_session{$key} ne $s
				|| $m !~ /^\Q$key\E-c\d+$/)
			{
				diag("$s: seq $seq key $key marker $m, acknowledged as " . ($seq_of{$key} // 'nothing'));
				$wrong++;
			}
		}
		else
		{
			$dups++, diag("$s: $m twice") if $plain_found{$m};
			$plain_found{$m} = "$s $seq";
			$wrong++, diag("$s: seq $seq $m acknowledged as " . ($plain_acked{$m} // 'nothing'))
			  if ($plain_acked{$m} // '') ne "$s $seq";
		}
	}
}
$missing = grep { !exists $plain_found{$_} } keys %plain_acked;
my $stored_keys = fleet_query($node,
	"SELECT count(DISTINCT (m.session_id, m.idempotency_key)) FROM unnest(ARRAY['"
	  . join("','", @$sessions) . "']) s, LATERAL fleetlm.messages(s, 0, 100000) m WHERE m.idempotency_key LIKE 'race-%'");
is($stored_keys, $nkeys, "messages() holds each of the $nkeys keys");
is($dups, 0, 'messages(): no key and no unkeyed message twice');
is($wrong, 0, 'messages(): each message at the seq its clients were given');
is($gaps, 0, 'messages(): seqs gapless');
is($missing, 0, 'messages(): every acknowledged unkeyed append present');

# the table, after flush()
fleet_query($node, 'SELECT fleetlm.flush()');
is(fleet_query($node, "SELECT count(*) FROM (SELECT session_id, idempotency_key FROM fleetlm.messages"
		  . " WHERE idempotency_key IS NOT NULL GROUP BY 1, 2 HAVING count(*) > 1) d"),
	'0', 'the table holds no key twice');
is(fleet_query($node, "SELECT count(*) FROM fleetlm.messages WHERE idempotency_key LIKE 'race-%'"),
	$nkeys, "the table holds each of the $nkeys keys once");
is(fleet_query($node, "SELECT count(*) FROM fleetlm.messages WHERE idempotency_key LIKE 'stall-%'"),
	$rounds, 'and each key of the stalled rounds once');
is(table_vs_messages($node, $sessions), '0', 'the table holds exactly what messages() returns');
# a retry now finds every key in the table
my $retry_wrong = 0;
for my $k (1 .. $nkeys)
{
	next unless $k % 25 == 0;
	my $got = fleet_query($node, 'SELECT ' . keyed($key_session{"race-$k"}, "race-$k", 'late'));
	$retry_wrong++ if $got != $seq_of{"race-$k"};
}
is($retry_wrong, 0, 'a late retry returns the seq every racer got');

my $applier_batches = stat_value($node, 'applier_batches') - $batches0;
diag("017_idempotency_race: stalled rounds=$stall_ok x 3 racers, race keys=$nkeys x $clients clients, acknowledged=" . scalar(@$acked)
	  . ", seq mismatches=$mismatch, duplicate keys=$dups, applier batches during the race=$applier_batches, client errors=$e->{messages}");
$node->stop;
done_testing();

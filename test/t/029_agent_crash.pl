# 029_agent_crash.pl: turns survive crashes, and are answered exactly once.
# Users keep speaking to agents while the postmaster is killed (-9) six
# times: in odd cycles at a random moment (replies mid-stream), in even
# cycles right after an answer became durable (the applier has most
# likely not applied it: only the log says the turn is answered).  After
# the last restart every session's last user message must be answered, no
# turn may have two answers, every answer must answer a user message, and
# no acknowledged message may be lost.  Then SIGTERM of the dispatcher
# while an agent hangs: it exits within a second, and the turn runs again.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FleetlmTest;

my $mock = start_mock_agent();
my $node = agent_node('acrash', $mock);
my $url = $mock->{url};
my $nsessions = 12;

sub sql { return $node->safe_psql('postgres', $_[0]); }

# sessions k-i: user u-i, agent a-i; each agent streams its reply in 6
# lines 30 ms apart, so a kill often lands mid-stream
my $sessions = create_sessions($node, 'k', $nsessions);
sql("SELECT fleetlm.register_agent('a-' || i, '$url', '/slow?delay_ms=30&chunks=3', debounce_ms => 0)"
	  . " FROM generate_series(1, $nsessions) i");

my (@acked, %sent);
my $answers_seen = 0;

sub answers_total
{
	return sql("SELECT count(*) FROM generate_series(1, $nsessions) i,"
		  . " LATERAL fleetlm.messages('k-' || i, 0, 100000) m WHERE m.idempotency_key LIKE 'turn:%'");
}

for my $cycle (1 .. 6)
{
	my $tag = "C$cycle";
	my $load = start_load($node, clients => 3, tag => $tag,
		statements => sub {
			my ($c) = @_;
			return map {
				my $i = 1 + int(rand($nsessions));
				my $m = "$tag-c$c-$_";
				[ "(SELECT fleetlm.append('k-$i', 'u-$i', 'text', '{\"m\": \"$m\", \"text\": \"$m\"}') FROM pg_sleep(0.02))",
				  $m, "k-$i" ]
			} 1 .. 200;
		});
	wait_acked($load, 20);
	if ($cycle % 2)
	{
		usleep(100_000 + int(rand(600_000)));
	}
	else
	{
		# right after the next answer becomes durable
		my $before = answers_total();
		my $deadline = time + 20;
		usleep(5_000) while answers_total() == $before && time < $deadline;
	}
	$node->kill9;
	my ($a, $s) = finish_load($load);
	push @acked, @$a;
	%sent = (%sent, %$s);
	check_client_errors($load, "$tag: kill -9", allowed => [ crash_errors() ]);
	restart_node($node);
	wait_ready($node);
}

# let every turn finish
my $deadline = time + 90;
my $settled = 0;
while (time < $deadline)
{
	my $open = sql(
		"SELECT count(*) FROM generate_series(1, $nsessions) i,"
		  . " LATERAL (SELECT max(seq) FILTER (WHERE sender_id = 'u-' || i) AS u,"
		  . "                 max(substr(idempotency_key, 6)::bigint) FILTER (WHERE idempotency_key LIKE 'turn:%') AS t"
		  . "            FROM fleetlm.messages('k-' || i, 0, 100000)) x"
		  . " WHERE x.u IS DISTINCT FROM x.t");
	if ($open == 0 && sql("SELECT count(*) FROM fleetlm.agent_turns") == 0)
	{
		$settled = 1;
		last;
	}
	usleep(200_000);
}
ok($settled, 'every session\'s last user message is answered (no turn lost)');

my ($dups, $orphans, $user_msgs, $answers, $errors, $lost) = (0, 0, 0, 0, 0, 0);
my %found;
for my $s (@$sessions)
{
	my ($i) = $s =~ /(\d+)$/;
	my $rows = sql("SELECT seq, sender_id, kind, coalesce(idempotency_key, ''), coalesce(content->>'m', '')"
		  . " FROM fleetlm.messages('$s', 0, 100000) ORDER BY seq");
	my (%user_seq, %keys);
	for my $line (split /\n/, $rows)
	{
		my ($seq, $sender, $kind, $key, $m) = split /\|/, $line, -1;
		if ($sender eq "u-$i")
		{
			$user_seq{$seq} = 1;
			$found{$m}++;
			$user_msgs++;
		}
		elsif ($key =~ /^turn:(\d+)$/)
		{
			$answers++;
			$errors++ if $kind eq 'agent_error';
			$dups++ if $keys{$1}++;
			$orphans++ unless $user_seq{$1};
			diag("$s: answer $key ($kind) from $sender") unless $sender eq "a-$i";
		}
		else
		{
			diag("$s: unexpected message seq $seq from $sender ($kind)");
			$orphans++;
		}
	}
}
for my $a (@acked)
{
	$lost++ unless $found{ $a->[1] };
}
is($dups, 0, 'no turn has two answers');
is($orphans, 0, 'every answer answers a user message of its session');
is($lost, 0, 'no acknowledged message is lost');
ok($answers > 12, "answers were written across the crashes ($answers)");
my $dupes = grep { $found{$_} > 1 } keys %found;
is($dupes, 0, 'no user message twice');
diag("029_agent_crash: faults=6 postmaster kill -9 (3 at random, 3 right after an answer), acknowledged user messages=" . scalar(@acked)
	  . ", user messages=$user_msgs, answers=$answers (agent_error=$errors), duplicate answers=$dups, lost=$lost");

# --- SIGTERM with a hung agent ------------------------------------------------------
sql("SELECT 1 FROM fleetlm.register_agent('hung', '$url', '/hang', debounce_ms => 0, timeout_ms => 600000)");
sql("SELECT fleetlm.create_session('hanger', 'hung', '{}', 'h-1')");
sql("SELECT fleetlm.append('h-1', 'hanger', 'text', '{\"text\": \"are you there\"}')");
my $until = time + 10;
usleep(20_000) until sql("SELECT count(*) FROM fleetlm.agent_turns WHERE session_id = 'h-1' AND state = 'running'") == 1 || time > $until;
my $pid = sql("SELECT dispatcher_pid FROM fleetlm.stat");
ok($pid > 0, 'the dispatcher runs');
my $t0 = time;
kill 'TERM', $pid;
usleep(10_000) while kill(0, $pid) && time - $t0 < 5;
my $took = time - $t0;
ok(!kill(0, $pid), 'the dispatcher exited on SIGTERM');
ok($took < 1.0, sprintf('... within a second (%.3f s), with a call in flight', $took));
$until = time + 15;
usleep(50_000) until scalar(grep { ref $_->{body} eq 'HASH' && ($_->{body}{session_id} // '') eq 'h-1' } mock_requests($mock)) >= 2 || time > $until;
is(scalar(grep { ref $_->{body} eq 'HASH' && ($_->{body}{session_id} // '') eq 'h-1' } mock_requests($mock)), 2,
	'the restarted dispatcher calls the agent again for the same turn');
my $newpid = sql("SELECT dispatcher_pid FROM fleetlm.stat");
isnt($newpid, $pid, 'a new dispatcher process');

$node->stop('immediate');
is(stop_mock_agent($mock), '', 'the mock agent wrote nothing to stderr');
done_testing();

# 027_agent_turns.pl: the dispatcher calls a session's agent when its user
# speaks, and appends the streamed reply exactly once: every protocol and
# framing, the exact history of each history mode, the request's headers,
# debounce, follow-up turns, concurrency caps, wait_for_stream and the
# counters.  The agent is test/mock_agent.pl on 127.0.0.1.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FleetlmTest;

my $mock = start_mock_agent();
my $node = agent_node('turns', $mock);
my $url = $mock->{url};

# a secret, in the file only the server reads
my $secrets = $node->data_dir . '/fleetlm_secrets.conf';
open my $fh, '>', $secrets or die $!;
print $fh "# test secrets\nMOCK_TOKEN = Bearer s3cr3t-v4lue\n";
close $fh;
chmod 0600, $secrets;
$node->reload;

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub agent
{
	my ($id, $path, %o) = @_;
	my $args = join('', map { ", $_ => $o{$_}" } sort keys %o);
	sql("SELECT 1 FROM fleetlm.register_agent('$id', '$url', '$path'$args)");
}

sub session
{
	my ($s, $agent, $user) = @_;
	$user //= 'alice';
	sql("SELECT fleetlm.create_session('$user', '$agent', '{}', '$s')");
}

sub say_
{
	my ($s, $text, $user) = @_;
	$user //= 'alice';
	return sql("SELECT fleetlm.append('$s', '$user', 'text', jsonb_build_object('text', '$text'))");
}

sub reply_text
{
	my ($a) = @_;
	return join('', map { $_->{text} // '' } grep { $_->{type} eq 'text' } @{ $a->{content}{parts} });
}

# --- each protocol and framing -------------------------------------------
agent('jsonl', '/jsonl', debounce_ms => 0);
agent('sse', '/sse', debounce_ms => 0);
agent('oai', '/openai', protocol => "'openai'", model => "'mock-model'", debounce_ms => 0);
for my $a (qw(jsonl sse oai))
{
	session("p-$a", $a);
	say_("p-$a", "hello $a");
}
for my $a (qw(jsonl sse oai))
{
	my $ans = wait_answer($node, "p-$a", 1);
	ok($ans, "$a: the turn was answered");
	is($ans->{kind}, 'assistant', "$a: kind assistant");
	is($ans->{sender_id}, $a, "$a: sent by the agent");
	is(reply_text($ans), "echo: hello $a", "$a: the streamed text, compacted");
	is($ans->{content}{role}, 'assistant', "$a: role assistant");
	is($ans->{metadata}{turn}, 1, "$a: metadata.turn");
	is_deeply(answers_of($node, "p-$a"), [ [ 1, 'assistant' ] ], "$a: exactly one answer");
}
my ($r) = mock_requests($mock, '/openai');
is_deeply($r->{body}, { model => 'mock-model', stream => JSON::PP::true,
		messages => [ { role => 'user', content => 'hello oai' } ] },
	'openai: the request maps the history to chat messages');
($r) = mock_requests($mock, '/jsonl');
is($r->{headers}{'idempotency-key'}, 'p-jsonl:1', 'Idempotency-Key is <session>:<turn>');
is($r->{headers}{'content-type'}, 'application/json', 'JSON body');
is_deeply([ sort keys %{ $r->{body} } ],
	[qw(agent_id attempt messages session_id turn user_id)], 'fleetlm body fields');
is_deeply([ @{ $r->{body} }{qw(session_id agent_id user_id turn attempt)} ],
	[ 'p-jsonl', 'jsonl', 'alice', 1, 1 ], 'fleetlm body values');
is_deeply([ sort keys %{ $r->{body}{messages}[0] } ],
	[qw(content inserted_at kind metadata sender_id seq)], 'message fields');

# --- several messages in one reply: one atomic group -------------------------
agent('multi', '/multi', debounce_ms => 0);
session('mu-1', 'multi');
say_('mu-1', 'two please');
my $mu = wait_answer($node, 'mu-1', 1);
is(reply_text($mu), 'first', 'multi: the first message carries the key');
my $murows = sql("SELECT seq || ' ' || kind || ' ' || coalesce(idempotency_key, '-') || ' ' || (content->'parts'->0->>'text')"
	  . " FROM fleetlm.messages('mu-1') WHERE seq > 1 ORDER BY seq");
is($murows, "2 assistant turn:1 first\n3 assistant - second", 'multi: both messages, consecutive seqs, one key for the group');

# --- exact history per mode ------------------------------------------------
# the agent is disabled while the history is written, so no turn starts
agent('hist-tail', '/jsonl', history_limit => 3, debounce_ms => 0);
agent('hist-last', '/jsonl', history_mode => "'last'", debounce_ms => 0);
agent('hist-entire', '/jsonl', history_mode => "'entire'", debounce_ms => 0);
for my $a (qw(hist-tail hist-last hist-entire))
{
	sql("SELECT fleetlm.set_agent_status('$a', 'disabled')");
	session("h-$a", $a);
	say_("h-$a", "m$_") for 1 .. 5;
	sql("SELECT fleetlm.append('h-$a', '$a', 'text', '{\"text\": \"earlier reply\"}')");
	say_("h-$a", 'm7');
	sql("SELECT fleetlm.set_agent_status('$a', 'enabled')");
}
# enabled again: a user message now starts the turn
for my $a (qw(hist-tail hist-last hist-entire))
{
	say_("h-$a", 'm8');
	ok(wait_answer($node, "h-$a", 8), "$a: turn 8 answered");
}
my %want = ('hist-tail' => [ 6, 7, 8 ], 'hist-last' => [8], 'hist-entire' => [ 1 .. 8 ]);
for my $a (sort keys %want)
{
	my @reqs = grep { $_->{body}{session_id} eq "h-$a" } mock_requests($mock);
	is(scalar(@reqs), 1, "$a: one request");
	is_deeply([ map { $_->{seq} } @{ $reqs[0]{body}{messages} } ], $want{$a},
		"$a: the history is exactly seqs @{$want{$a}}");
}
my ($tail) = grep { $_->{body}{session_id} eq 'h-hist-tail' } mock_requests($mock);
is($tail->{body}{messages}[0]{sender_id}, 'hist-tail', 'tail includes the agent\'s own message');
is($tail->{body}{messages}[2]{content}{text}, 'm8', 'tail ends at the turn\'s message');

# the next turn's history comes from the dispatcher's cache (the tail of
# the log it read): it must be exactly what the table says, byte for byte
# once decoded, the agent's reply included
say_('h-hist-tail', 'm10');
ok(wait_answer($node, 'h-hist-tail', 10), 'hist-tail: turn 10 answered');
my ($t11) = grep { $_->{body}{session_id} eq 'h-hist-tail' && $_->{body}{turn} == 10 } mock_requests($mock);
my $want_rows = sql("SELECT json_agg(json_build_object('seq', seq, 'sender_id', sender_id, 'kind', kind,"
	  . " 'content', content, 'metadata', metadata, 'inserted_at', inserted_at) ORDER BY seq)"
	  . " FROM fleetlm.messages('h-hist-tail', 7, 3)");
is_deeply($t11->{body}{messages}, JSON::PP::decode_json($want_rows),
	'hist-tail: turn 10 carries seqs 8..10 exactly as stored (the reply to turn 8 included)');
is($t11->{body}{messages}[1]{kind}, 'assistant', 'hist-tail: seq 9 is the agent\'s reply');

# --- headers and secrets ------------------------------------------------------
agent('hdr', '/headers', debounce_ms => 0,
	headers => q('{"X-Custom": "plain-value"}'),
	secret_headers => q('{"Authorization": "MOCK_TOKEN"}'));
session('hd-1', 'hdr');
say_('hd-1', 'show headers');
my $h = wait_answer($node, 'hd-1', 1);
my $seen = JSON::PP::decode_json(reply_text($h));
is($seen->{'x-custom'}, 'plain-value', 'plain header sent');
is($seen->{authorization}, 'Bearer s3cr3t-v4lue', 'secret header resolved from the secrets file');

# --- debounce: 10 messages 100 ms apart make one request -------------------
agent('deb', '/jsonl', debounce_ms => 500);
session('d-1', 'deb');
# one statement, so the gaps are 100 ms however busy the machine is
sql("SELECT count(fleetlm.append('d-1', 'alice', 'text', jsonb_build_object('text', 'burst ' || i)))"
	  . " FROM generate_series(1, 10) i, LATERAL pg_sleep(CASE WHEN i > 1 THEN 0.1 ELSE 0 END)");
my $maxgap = sql("SELECT max(gap) FROM (SELECT extract(epoch FROM inserted_at - lag(inserted_at) OVER (ORDER BY seq)) AS gap"
	  . " FROM fleetlm.messages('d-1')) g");
my $d = wait_answer($node, 'd-1', 10);
ok($d, 'the burst was answered as turn 10');
my @dreq = grep { $_->{body}{session_id} eq 'd-1' } mock_requests($mock);
is(scalar(@dreq), 1, "debounce: one request for 10 messages 100 ms apart (largest gap ${maxgap}s)");
is(scalar(@{ $dreq[0]{body}{messages} }), 10, 'debounce: the request carries all 10');
is_deeply(answers_of($node, 'd-1'), [ [ 10, 'assistant' ] ], 'debounce: one answer');

# --- follow-up turn: messages during a slow turn make a second turn ---------
agent('slow', '/slow?delay_ms=150', debounce_ms => 0);
session('f-1', 'slow');
say_('f-1', 'first');
# wait until the call is in flight, then speak again twice
my $deadline = time + 10;
usleep(20_000) until scalar(mock_requests($mock, '/slow')) >= 1 || time > $deadline;
say_('f-1', 'second');
say_('f-1', 'third');
ok(wait_answer($node, 'f-1', 1), 'follow-up: turn 1 answered');
my $f2 = wait_answer($node, 'f-1', 3);
ok($f2, 'follow-up: a second turn, T = 3 (the user\'s last seq when it started)');
is_deeply(answers_of($node, 'f-1'), [ [ 1, 'assistant' ], [ 3, 'assistant' ] ],
	'follow-up: one answer per turn, in order');
my @freq = grep { $_->{body}{session_id} eq 'f-1' } mock_requests($mock);
is(scalar(@freq), 2, 'follow-up: two requests');
is($freq[1]{body}{turn}, 3, 'follow-up: the second request is turn 3');
is_deeply([ map { $_->{seq} } @{ $freq[1]{body}{messages} } ], [ 1, 2, 3 ],
	'follow-up: its history is seqs 1..3 (T-N+1..T: the reply to turn 1, seq 4, came after T)');

# --- wait_for_stream: chunks arrive before done ---------------------------------
agent('stream', '/jsonl?delay_ms=300&chunks=4', debounce_ms => 0);
session('w-1', 'stream');
my $t0 = time;
say_('w-1', 'stream please');
my $first = sql("SELECT chunk_no || ' ' || done || ' ' || (chunk->>'type') FROM fleetlm.wait_for_stream('w-1', 1, 0, '10s') LIMIT 1");
my $t_first = time - $t0;
like($first, qr/^1 false start$/, 'wait_for_stream: the first chunk, not done');
my ($after, $done_seen, $rows) = (0, 0, 0);
my @types;
while (!$done_seen && time - $t0 < 20)
{
	my $out = sql("SELECT chunk_no, done, coalesce(chunk->>'type', '') FROM fleetlm.wait_for_stream('w-1', 1, $after, '5s')");
	for my $line (split /\n/, $out)
	{
		my ($no, $done, $type) = split /\|/, $line;
		$rows++;
		push @types, $type if $type ne '';
		$after = $no if $no ne '' && $no > $after;
		$done_seen = 1 if $done eq 't';
	}
}
ok($done_seen, 'wait_for_stream: done once the reply is durable');
is_deeply(\@types, [qw(start text-start text-delta text-delta text-delta text-delta text-end finish)],
	'wait_for_stream: every chunk, in order');
my $w = wait_answer($node, 'w-1', 1);
ok($t_first < 1.5 * 1 + 1, "first chunk arrived early (${t_first}s; the reply takes ~2.4 s)");
is(sql("SELECT count(*) FROM fleetlm.wait_for_stream('w-1', 1, 0, '1s') WHERE done"), 1,
	'wait_for_stream on an answered turn returns done');
is(sql("SELECT count(*) FROM fleetlm.wait_for_stream('w-1', 99, 0, '0.2s')"), 0,
	'wait_for_stream on a turn that never comes times out empty');

# a reader that fell behind the buffer (64kB) gets a clear error, and a
# reader at the end gets done
agent('long', '/jsonl?chunks=3000', debounce_ms => 0);
session('lo-1', 'long');
say_('lo-1', 'a long one');
my $lo = wait_answer($node, 'lo-1', 1);
ok($lo, 'long reply answered');
my ($lret, $lout, $lerr) = $node->psql('postgres', "SELECT count(*) FROM fleetlm.wait_for_stream('lo-1', 1, 0, '1s')");
like($lerr, qr/chunks after 0 of turn 1 of session "lo-1" are no longer buffered/, 'wait_for_stream: a reader behind the buffer gets 55000');
like($lerr, qr/HINT:.*messages\(\)/, '... with a hint to read the final message');
is(sql("SELECT string_agg(chunk->>'type', ',') || ' ' || bool_or(done) FROM fleetlm.wait_for_stream('lo-1', 1, 3002, '1s')"),
	'text-end,finish true', 'wait_for_stream: the last chunks of a long reply, then done');

# --- a client long-polling for the reply flushes it itself ------------------
# (the dispatcher appends answers without waiting and wakes the session's
# long-pollers, which lead the flush round; api.c, append.c)
agent('lp', '/jsonl', debounce_ms => 0);
session('lp-1', 'lp');
my $lp = sql("SELECT fleetlm.append('lp-1', 'alice', 'text', '{\"text\": \"poll me\"}') AS seq");
my $lpres = sql("SELECT seq || ' ' || kind || ' ' || idempotency_key FROM fleetlm.wait_for_messages('lp-1', $lp, '10s')");
is($lpres, "2 assistant turn:1", 'wait_for_messages returns the reply (durable: it returns only durable messages)');
# a poller of the same session that waits for something later does not
# flush it: the dispatcher wakes the WAL writer after its grace period, and
# the reply is durable long before the writer's own 1 s timer
session('lp-2', 'lp');
my $bg = $node->background_psql('postgres');
$bg->query_until(qr/started/, "\\echo started\nSELECT count(*) FROM fleetlm.wait_for_messages('lp-2', 50, '3s');\n");
usleep(100_000);
my $t_lp = time;
sql("SELECT fleetlm.append('lp-2', 'alice', 'text', '{\"text\": \"hello\"}')");
my $lp2 = wait_answer($node, 'lp-2', 1, 5);
my $lp2_took = time - $t_lp;
ok($lp2, 'a reply whose session has only an unrelated poller becomes durable');
ok($lp2_took < 0.8, sprintf('... without waiting for the WAL writer\'s 1 s timer (%.3f s)', $lp2_took));
$bg->quit;

# --- concurrency cap ---------------------------------------------------------
agent('cap', '/slow?delay_ms=100&chunks=5', max_concurrency => 2, debounce_ms => 0);
session("c-$_", 'cap', "user$_") for 1 .. 6;
say_("c-$_", 'go', "user$_") for 1 .. 6;
my $max_running = 0;
$deadline = time + 30;
while (time < $deadline)
{
	my ($running, $answered) = split /\|/, sql("SELECT (SELECT count(*) FROM fleetlm.agent_turns WHERE agent_id = 'cap' AND state = 'running'),"
		  . " (SELECT count(*) FROM generate_series(1, 6) i, LATERAL fleetlm.messages('c-' || i) m WHERE m.idempotency_key = 'turn:1')");
	$max_running = $running if $running > $max_running;
	last if $answered == 6;
	usleep(20_000);
}
is(scalar(grep { defined wait_answer($node, "c-$_", 1, 5) } 1 .. 6), 6, 'cap: all six turns answered');
ok($max_running >= 1 && $max_running <= 2, "cap: at most max_concurrency = 2 running at once (saw $max_running)");
my @creq = sort { $a->{t} <=> $b->{t} } mock_requests($mock, '/slow');
@creq = grep { $_->{body}{session_id} =~ /^c-/ } @creq;
# each reply takes >= 7 x 100 ms: a third request may not start before the first ended
ok($creq[2]{t} - $creq[0]{t} >= 0.6, sprintf('cap: the third call started %.2f s after the first', $creq[2]{t} - $creq[0]{t}));

# --- the user's own agent messages and other senders start no turn --------
agent('quiet', '/jsonl', debounce_ms => 0);
session('q-1', 'quiet');
sql("SELECT fleetlm.append('q-1', 'quiet', 'text', '{\"text\": \"agent speaks first\"}')");
sql("SELECT fleetlm.append('q-1', 'someone-else', 'text', '{\"text\": \"not the user\"}')");
usleep(500_000);
is(scalar(grep { $_->{body}{session_id} eq 'q-1' } mock_requests($mock)), 0,
	'messages not from the session\'s user start no turn');
# a session whose agent is not registered: nothing
session('n-1', 'nobody');
say_('n-1', 'anyone there?');

# --- counters and connection reuse -----------------------------------------------
my $stat = sql("SELECT turns_started, turns_completed, turns_failed, calls_in_flight, http_time_ms > 0 FROM fleetlm.stat");
my ($started, $completed, $failed, $inflight, $http) = split /\|/, $stat;
is($started, 22, 'stat: turns_started counts the 22 turns of this test');
is($completed, $started, 'stat: every started turn completed');
is($failed, 0, 'stat: none failed');
is($http, 't', 'stat: http_time_ms counted');
my %conns;
$conns{ $_->{conn} }++ for mock_requests($mock);
ok(scalar(keys %conns) < scalar(mock_requests($mock)), sprintf('keep-alive: %d requests on %d connections',
		scalar(mock_requests($mock)), scalar(keys %conns)));
is(sql("SELECT count(*) FROM fleetlm.agent_turns"), 0, 'agent_turns is empty once everything is answered');
is_deeply(answers_of($node, 'n-1'), [], 'no agent registered: no answer');

# --- the secret never reaches a table, the log or a dump ---------------------------
# (the /headers reply echoed it into hd-1: delete that session first)
sql("SELECT fleetlm.delete_session('hd-1')");
sql("SELECT fleetlm.flush()");
my $dump = `pg_dump -h @{[ $node->host ]} -p @{[ $node->port ]} -d postgres 2>&1`;
unlike($dump, qr/s3cr3t/, 'the secret is not in pg_dump');
like($dump, qr/MOCK_TOKEN/, 'the dump has the secret\'s name (sanity check of the dump)');
my $log = slurp_file($node->logfile);
unlike($log, qr/s3cr3t/, 'the secret is not in the server log');

$node->stop;
my $err = stop_mock_agent($mock);
is($err, '', 'the mock agent wrote nothing to stderr');
done_testing();

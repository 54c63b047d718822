# 028_agent_failures.pl: how the dispatcher fails, visibly: retries on
# transport errors, timeouts, 408/425/429/5xx and streams without finish,
# with back-off (and Retry-After); an agent_error message after
# max_attempts; no retry on other 4xx or malformed streams; idle and total
# timeouts; the allowlist at dispatch time; the connected-address check;
# missing secrets; agents and secrets invisible to fleetlm_writer.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FleetlmTest;

my $mock = start_mock_agent();
my $node = agent_node('fail', $mock,
	'fleetlm.dispatch_max_inflight' => '3',
	'fleetlm.dispatch_max_turns' => '16',
	'fleetlm.dispatch_idle_timeout' => '1s',
	'fleetlm.dispatch_retry_max_delay' => '2s',
	'fleetlm.dispatch_max_line' => '64kB',
	'fleetlm.dispatch_max_response' => '1MB');
my $url = $mock->{url};

sub sql { return $node->safe_psql('postgres', $_[0]); }

# register agent $id at $path, create session "s-$id" and have its user
# speak once: turn 1
sub turn_for
{
	my ($id, $path, %o) = @_;
	my $args = join('', map { ", $_ => $o{$_}" } sort keys %o);
	sql("SELECT 1 FROM fleetlm.register_agent('$id', '$url', '$path', debounce_ms => 0$args)");
	sql("SELECT fleetlm.create_session('bob', '$id', '{}', 's-$id')");
	sql("SELECT fleetlm.append('s-$id', 'bob', 'text', '{\"text\": \"hi\"}')");
}

sub requests_of
{
	my ($s) = @_;
	my @r = sort { $a->{t} <=> $b->{t} } grep { ref $_->{body} eq 'HASH' && ($_->{body}{session_id} // '') eq $s } mock_requests($mock);
	return @r;
}

# --- retry then success ------------------------------------------------------
turn_for('f503', '/fail/2/503', max_attempts => 5);
turn_for('flaky', '/flaky/1', max_attempts => 3);
turn_for('f429', '/fail/1/429?retry_after=1', max_attempts => 3);
turn_for('f408', '/fail/1/408', max_attempts => 2);
turn_for('close', '/close', max_attempts => 2);

my $a = wait_answer($node, 's-f503', 1);
is($a->{kind}, 'assistant', '503 twice, then a reply: the reply is appended');
my @r = requests_of('s-f503');
is(scalar(@r), 3, '503: three attempts');
is_deeply([ map { $_->{body}{attempt} } @r ], [ 1, 2, 3 ], '503: attempts numbered 1, 2, 3');
is_deeply([ map { $_->{headers}{'idempotency-key'} } @r ], [ ('s-f503:1') x 3 ],
	'503: every attempt has the same Idempotency-Key');
ok($r[2]{t} - $r[1]{t} <= 0.5 + 0.3, sprintf('503: back-off before attempt 3 within the 500 ms ceiling (%.3f s)', $r[2]{t} - $r[1]{t}));
is($a->{metadata}{attempt}, 3, 'the reply says its attempt');

$a = wait_answer($node, 's-flaky', 1);
is($a->{kind}, 'assistant', 'a stream without finish is retried, then the complete reply lands');
is(scalar(requests_of('s-flaky')), 2, 'flaky: two attempts');
is(scalar(@{ $a->{content}{parts} }), 1, 'flaky: only the complete attempt\'s parts are in the message');

$a = wait_answer($node, 's-f429', 1);
is($a->{kind}, 'assistant', '429 with Retry-After, then a reply');
@r = requests_of('s-f429');
ok($r[1]{t} - $r[0]{t} >= 0.95, sprintf('429: Retry-After: 1 honoured (%.3f s)', $r[1]{t} - $r[0]{t}));

is(wait_answer($node, 's-f408', 1)->{kind}, 'assistant', '408 is retried');
$a = wait_answer($node, 's-close', 1);
is($a->{kind}, 'agent_error', 'a connection closed without an answer, twice: agent_error');
is($a->{content}{attempts}, 2, 'close: after max_attempts = 2');
# (libcurl itself may resend a request once on a new connection when a
# reused one closes: count our attempts by their number)
my %att = map { $_->{body}{attempt} => 1 } requests_of('s-close');
is_deeply([ sort keys %att ], [ 1, 2 ], 'close: the transport error was retried: attempts 1 and 2');

# --- agent_error after max_attempts, with the status ---------------------
turn_for('e500', '/status/500', max_attempts => 3);
$a = wait_answer($node, 's-e500', 1);
is($a->{kind}, 'agent_error', '500 every time: agent_error');
is_deeply($a->{content}, { error => 'the agent answered HTTP 500', status => 500, attempts => 3 },
	'agent_error content: {error, status, attempts}');
is($a->{sender_id}, 'e500', 'agent_error is sent by the agent');
is($a->{metadata}{turn}, 1, 'agent_error metadata.turn');
is(scalar(requests_of('s-e500')), 3, '500: exactly max_attempts calls');

# --- no retry on other 4xx and on malformed streams --------------------------
turn_for('e400', '/status/400');
$a = wait_answer($node, 's-e400', 1);
is($a->{kind}, 'agent_error', '400: agent_error');
is($a->{content}{attempts}, 1, '400: not retried');
is($a->{content}{status}, 400, '400: status recorded');
for my $kind (qw(notjson notobject badutf8 longline nodelta toolnoid huge))
{
	turn_for("m-$kind", "/malformed/$kind");
}
turn_for('m-oai', '/malformed/openai_error', protocol => "'openai'", model => "'x'");
for my $kind (qw(notjson notobject badutf8 longline nodelta toolnoid huge oai))
{
	my $s = "s-m-$kind";
	$a = wait_answer($node, $s, 1);
	ok($a, "malformed $kind: answered");
	is($a->{kind}, 'agent_error', "malformed $kind: agent_error");
	my @calls = $kind eq 'oai' ? mock_requests($mock, '/malformed/openai_error') : requests_of($s);
	is(scalar(@calls), 1, "malformed $kind: not retried");
	like($a->{content}{error} // '', qr/\S/, "malformed $kind: says why: " . ($a->{content}{error} // ''));
}
# an agent's own error chunk inside a finished stream is its answer
turn_for('errchunk', '/malformed/errorchunk');
$a = wait_answer($node, 's-errchunk', 1);
ok($a, 'error chunk: answered');
is(scalar(requests_of('s-errchunk')), 1, 'error chunk: not retried');

# --- timeouts ----------------------------------------------------------------------
turn_for('idle', '/idle', max_attempts => 2);
turn_for('hang', '/hang', timeout_ms => 1500, max_attempts => 1);
my $t0 = time;
$a = wait_answer($node, 's-idle', 1);
is($a->{kind}, 'agent_error', 'idle stream: agent_error after its attempts');
like($a->{content}{error}, qr/no data from the agent for 1000 ms/, 'idle: the idle timeout is the reason');
is(scalar(requests_of('s-idle')), 2, 'idle: retried once');
$a = wait_answer($node, 's-hang', 1);
is($a->{kind}, 'agent_error', 'hung agent: agent_error');
like($a->{content}{error}, qr/timed out|no data/i, 'hung agent: a timeout is the reason: ' . $a->{content}{error});

# --- allowlist at dispatch time ---------------------------------------------------
sql("SELECT 1 FROM fleetlm.register_agent('gone', '$url', '/jsonl', debounce_ms => 0)");
sql("SELECT fleetlm.create_session('bob', 'gone', '{}', 's-gone')");
$node->append_conf('postgresql.conf', "fleetlm.agent_url_allowlist = 'http://127.0.0.2:1/'\n");
$node->reload;
usleep(300_000);
sql("SELECT fleetlm.append('s-gone', 'bob', 'text', '{\"text\": \"hi\"}')");
$a = wait_answer($node, 's-gone', 1);
is($a->{kind}, 'agent_error', 'URL no longer allowed: agent_error');
like($a->{content}{error}, qr/not allowed by fleetlm.agent_url_allowlist/, 'allowlist: the reason');
is(scalar(requests_of('s-gone')), 0, 'allowlist: no call was made');
my ($ret, $out, $err) = $node->psql('postgres',
	"SELECT fleetlm.register_agent('x', '$url', '/jsonl')");
like($err, qr/not allowed|allowlist/, 'allowlist: registration refused too');

# --- a host name must lead to a public address (DNS rebinding) -------------
$node->append_conf('postgresql.conf',
	"fleetlm.agent_url_allowlist = '$url/, http://localhost:$mock->{port}/'\n");
$node->reload;
usleep(300_000);
turn_for('byname', "/jsonl", max_attempts => 1);
ok(wait_answer($node, 's-byname', 1), 'by address: answered');
sql("SELECT 1 FROM fleetlm.register_agent('byname', 'http://localhost:$mock->{port}', '/jsonl', debounce_ms => 0)");
sql("SELECT fleetlm.append('s-byname', 'bob', 'text', '{\"text\": \"again\"}')");
$a = wait_answer($node, 's-byname', 3);
ok($a, 'by name: answered');
is($a->{kind}, 'agent_error', 'localhost resolves to a loopback address: refused');
like($a->{content}{error}, qr/not a public address/, 'by name: the reason');

# --- a secret that is not defined ------------------------------------------------------
sql("SELECT 1 FROM fleetlm.register_agent('nosecret', '$url', '/jsonl', debounce_ms => 0,"
	  . " secret_headers => '{\"Authorization\": \"NOT_DEFINED\"}')");
sql("SELECT fleetlm.create_session('bob', 'nosecret', '{}', 's-nosecret')");
sql("SELECT fleetlm.append('s-nosecret', 'bob', 'text', '{\"text\": \"hi\"}')");
$a = wait_answer($node, 's-nosecret', 1);
is($a->{kind}, 'agent_error', 'missing secret: agent_error');
like($a->{content}{error}, qr/secret "NOT_DEFINED"/, 'missing secret: names the secret, not a value');
is(scalar(requests_of('s-nosecret')), 0, 'missing secret: no call was made');

# --- writers and readers cannot see agents' configuration --------------------------
sql("CREATE ROLE w1 LOGIN IN ROLE fleetlm_writer");
($ret, $out, $err) = $node->psql('postgres', "SELECT secret_headers FROM fleetlm.agents", extra_params => [ '-U', 'w1' ]);
like($err, qr/permission denied/, 'fleetlm_writer cannot read fleetlm.agents');
($ret, $out, $err) = $node->psql('postgres', "SELECT * FROM fleetlm.agent_turns", extra_params => [ '-U', 'w1' ]);
like($err, qr/permission denied/, 'fleetlm_writer cannot read fleetlm.agent_turns');
($ret, $out, $err) = $node->psql('postgres', "SELECT fleetlm.register_agent('w', '$url')", extra_params => [ '-U', 'w1' ]);
like($err, qr/permission denied/, 'fleetlm_writer cannot register agents');
($ret, $out, $err) = $node->psql('postgres', "SELECT count(*) FROM fleetlm.agents_public", extra_params => [ '-U', 'w1' ]);
is($ret, 0, 'fleetlm_writer reads agents_public');
($ret, $out, $err) = $node->psql('postgres', "SHOW fleetlm.agent_secrets_file", extra_params => [ '-U', 'w1' ]);
like($err, qr/must be superuser|permission denied|pg_read_all_settings/, 'the secrets file setting is hidden from writers');

# --- the global cap: fleetlm.dispatch_max_inflight = 3 ----------------------
sql("SELECT count(*) FROM generate_series(1, 2) i, LATERAL fleetlm.register_agent('g' || i, '$url',"
	  . " '/slow?delay_ms=100&chunks=2', debounce_ms => 0, max_concurrency => 10) r");
sql("SELECT fleetlm.create_session('gu' || i, 'g' || (1 + i % 2), '{}', 'gs-' || i) FROM generate_series(1, 8) i");
sql("SELECT fleetlm.append('gs-' || i, 'gu' || i, 'text', '{\"text\": \"go\"}') FROM generate_series(1, 8) i");
my ($gmax, $gdone) = (0, 0);
my $gdeadline = time + 30;
while (time < $gdeadline)
{
	my ($running, $inflight, $answered) = split /\|/, sql(
		"SELECT (SELECT count(*) FROM fleetlm.agent_turns WHERE state = 'running'),"
		  . " (SELECT calls_in_flight FROM fleetlm.stat),"
		  . " (SELECT count(*) FROM generate_series(1, 8) i, LATERAL fleetlm.messages('gs-' || i) m"
		  . "   WHERE m.idempotency_key = 'turn:1')");
	$gmax = $running if $running > $gmax;
	$gmax = $inflight if $inflight > $gmax;
	if ($answered == 8)
	{
		$gdone = 1;
		last;
	}
	usleep(20_000);
}
ok($gdone, 'global cap: all 8 turns answered');
ok($gmax >= 2 && $gmax <= 3, "global cap: at most dispatch_max_inflight = 3 calls at once (saw $gmax)");

# --- more unanswered sessions than fleetlm.dispatch_max_turns = 16 --------
sql("SELECT count(*) FROM fleetlm.register_agent('many', '$url', '/slow?delay_ms=20&chunks=2', debounce_ms => 0,"
	  . " max_concurrency => 3)");
sql("SELECT count(fleetlm.create_session('mu' || i, 'many', '{}', 'ms-' || i)) FROM generate_series(1, 40) i");
sql("SELECT count(fleetlm.append('ms-' || i, 'mu' || i, 'text', '{\"text\": \"hi\"}')) FROM generate_series(1, 40) i");
my ($mdone, $mmax) = (0, 0);
my $mdeadline = time + 60;
while (time < $mdeadline)
{
	my ($tracked, $answered) = split /\|/, sql(
		"SELECT (SELECT turns_tracked FROM fleetlm.stat),"
		  . " (SELECT count(*) FROM generate_series(1, 40) i, LATERAL fleetlm.messages('ms-' || i) m"
		  . "   WHERE m.idempotency_key = 'turn:1')");
	$mmax = $tracked if $tracked > $mmax;
	if ($answered == 40)
	{
		$mdone = 1;
		last;
	}
	usleep(50_000);
}
ok($mdone, 'a full turn table: all 40 turns are answered anyway');
ok($mmax <= 16, "the table never holds more than dispatch_max_turns (saw $mmax)");
like(slurp_file($node->logfile), qr/tracks 16 sessions with unanswered turns already|more than 16 sessions have unanswered turns/,
	'the full table was logged');

# --- counters ------------------------------------------------------------------------------
my ($failed, $retried, $tracked) = split /\|/,
  sql("SELECT turns_failed, attempts_retried, turns_tracked FROM fleetlm.stat");
ok($failed >= 15, "stat: turns_failed ($failed)");
ok($retried >= 8, "stat: attempts_retried ($retried)");
is($tracked, 0, 'stat: no turn left tracked');

$node->stop;
is(stop_mock_agent($mock), '', 'the mock agent wrote nothing to stderr');
done_testing();

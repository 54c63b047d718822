# 030_proxy.pl: fleetlm_proxy, fleetlm's API on a PL/Proxy coordinator in
# front of two fleetlm servers (shards), against the same calls on a third,
# single fleetlm server (ref): the same signatures, privileges, results and
# SQLSTATEs; the pinned hash and the spread of sessions over both shards;
# list_sessions paged across shards with ties, no row missing or repeated;
# inbox merged in one server's order; stats summed and per shard; flush;
# the agent registry on every shard and an agent turn through the proxy;
# wait_for_messages through the proxy woken by an append; a shard stopped
# (only its sessions fail, the all-shard calls fail as a whole) and
# started again.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use Digest::SHA qw(sha256);
use FleetlmTest;
use FleetlmProxy;

my $mock = start_mock_agent();
my @shard = (agent_node('shard0', $mock), agent_node('shard1', $mock));
my $ref = agent_node('ref', $mock);
my $nparts = 8;    # partition p lives on shard p % 2
my $coord = proxy_node('coord', [ map { $shard[ $_ % 2 ] } 0 .. $nparts - 1 ]);

sub sql { my ($node, $q) = @_; return $node->safe_psql('postgres', $q); }

# the same statement on the coordinator and on one server
sub same
{
	my ($q, %o) = @_;
	my $c = result($coord, $q, %o);
	my $r = result($ref, $q, %o);
	my $label = $o{label} // $q;
	$label = "$o{role}: $label" if $o{role};
	is($c, $r, "same: $label") or diag("statement: $q");
	return $c;
}

# the shard (0 or 1) a session id lives on, computed here from the hash's
# definition (SHA-256, first 4 bytes big-endian, top bit clear)
sub hash_of { return unpack('N', substr(sha256($_[0]), 0, 4)) & 0x7fffffff; }
sub shard_of { return (hash_of($_[0]) % $nparts) % 2; }

# the shard that holds the session's row, or -1 (none), or 2 (both)
sub where_is
{
	my ($s) = @_;
	my @has = map { sql($_, "SELECT count(*) FROM fleetlm.sessions WHERE session_id = '$s'") } @shard;
	return $has[0] && $has[1] ? 2 : $has[0] ? 0 : $has[1] ? 1 : -1;
}

# --- 1. the API: the same functions, types, views and privileges ------------
{
	my $funcs = "SELECT p.proname || '(' || pg_get_function_arguments(p.oid) || ') -> '"
	  . " || coalesce(pg_get_function_result(p.oid), 'procedure') || ' ' || coalesce(p.proacl::text, 'NULL')"
	  . " FROM pg_proc p WHERE p.pronamespace = 'fleetlm'::regnamespace";
	my %cf = map { $_ => 1 } split /\n/, sql($coord, $funcs);
	my @rf = grep { !/^_created\(/ } split /\n/, sql($ref, $funcs);
	my @missing = grep { !$cf{$_} } @rf;
	is(scalar(@missing), 0,
		'every fleetlm function exists on the coordinator with the same arguments, defaults, result and grants ('
		  . scalar(@rf) . ')')
	  or diag("missing or different:\n" . join("\n", @missing));
	my %rnames = map { /^(\w+)\(/; $1 => 1 } @rf;
	my @extra = sort grep { !$rnames{$_} && !/^_/ } map { /^(\w+)\(/; $1 } keys %cf;
	is("@extra", 'cancel_fenced_waits copy_partition fence_partition move_partition new_session_id'
		  . ' partition_count partition_of remove_partition_copy session_partition shard_stats switch_partition'
		  . ' unfence_partition',
		'the coordinator adds only the routing functions and shard_stats (and internal _ ones)');

	my $cols = "SELECT c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)"
	  . " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
	  . " WHERE c.relnamespace = 'fleetlm'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped"
	  . " AND c.relname IN ('messages', 'session_info', 'agents', 'stat', 'agent_turns')"
	  . " ORDER BY c.relname, a.attnum";
	is(sql($coord, $cols), sql($ref, $cols),
		'the row types messages, session_info, agents and the views stat, agent_turns have the same columns');
	my $views = "SELECT relname || ' ' || relacl::text FROM pg_class"
	  . " WHERE relnamespace = 'fleetlm'::regnamespace AND relname IN ('stat', 'agent_turns') ORDER BY 1";
	is(sql($coord, $views), sql($ref, $views), 'the views have the same grants');
	sql($coord, 'CREATE ROLE nobody');
	is(sql($coord, "SELECT count(*) FROM pg_proc WHERE pronamespace = 'fleetlm'::regnamespace"
		  . " AND has_function_privilege('nobody', oid, 'EXECUTE')"), '0',
		'no coordinator function is executable by PUBLIC');
}

# --- 2. the pinned hash ------------------------------------------------------
{
	# SQL literal => the id's UTF-8 bytes
	my @ids = ([ "'abc'", 'abc' ], [ "'c-1'", 'c-1' ], [ "'s'", 's' ],
		[ "'01M8E9E3JAHDM758ZDH6VS5TBT'", '01M8E9E3JAHDM758ZDH6VS5TBT' ],
		[ "U&'\\00e9t\\00e9'", "\xc3\xa9t\xc3\xa9" ], [ "repeat('x', 200)", 'x' x 200 ]);
	my $list = join(', ', map { $_->[0] } @ids);
	my $got = sql($coord, "SELECT string_agg(fleetlm.partition_of(s)::text, ' ' ORDER BY n)"
		  . " FROM unnest(ARRAY[$list]) WITH ORDINALITY u(s, n)");
	my @want = map { hash_of($_->[1]) } @ids;
	is($got, "@want", 'partition_of is the first 4 bytes of SHA-256 of the UTF-8 id, top bit clear');
	is(sql($coord, "SELECT fleetlm.partition_of('abc')"), '980948671', 'partition_of(abc) is pinned');
	is(sql($coord, 'SELECT fleetlm.partition_of(NULL)'), '0', 'a NULL id hashes to 0');
	is(sql($coord, "SELECT provolatile FROM pg_proc WHERE oid = 'fleetlm.partition_of'::regproc"), 'i',
		'partition_of is IMMUTABLE');
	is(sql($coord, "SELECT fleetlm.partition_count() || ' ' || fleetlm.session_partition('abc')"),
		"$nparts " . (980948671 % $nparts), 'partition_count and session_partition');
	is(sql($coord, "SELECT string_agg(shard || ':' || first_partition || ':' || partitions::text, ' ')"
		  . " FROM fleetlm._shards()"), '0:0:{0,2,4,6} 1:1:{1,3,5,7}',
		'the cluster is two servers of four partitions each');
}

# --- 3. every session-keyed call, and bad input, as on one server -----------
same("SELECT fleetlm.create_session('alice', 'bot', jsonb_build_object('k', i), 'c-' || i)"
	  . " FROM generate_series(1, 8) i", label => 'create_session c-1 .. c-8');
my @c = map { "c-$_" } 1 .. 8;
my %on = map { $_ => where_is($_) } @c;
is(join(' ', map { $on{$_} } @c), join(' ', map { shard_of($_) } @c),
	'each session was created on the shard of its partition');
ok((grep { $on{$_} == 0 } @c) && (grep { $on{$_} == 1 } @c), 'c-1 .. c-8 are on both shards');

my @calls = (
	# create_session
	"SELECT fleetlm.create_session('alice', 'bot', '{}', 'c-1')",
	"SELECT fleetlm.create_session('alice', 'bot', '[]', 'c-x')",
	"SELECT fleetlm.create_session(NULL, 'bot', '{}', 'c-x')",
	"SELECT fleetlm.create_session('alice', NULL)",
	"SELECT fleetlm.create_session('alice', 'bot', NULL)",
	"SELECT fleetlm.create_session('alice', 'bot', '{}', '')",
	"SELECT fleetlm.create_session('alice', 'bot', '{}', repeat('x', 1000))",
	"SELECT length(fleetlm.create_session('alice', 'bot', '{\"made\": \"here\"}'))",
	"SELECT length(fleetlm.create_session(user_id => 'alice', agent_id => 'bot'))",
	# append
	"SELECT fleetlm.append('c-1', 'alice', 'text', '{\"text\": \"hello\"}')",
	"SELECT fleetlm.append('c-1', 'alice', 'text', '{\"text\": \"keyed\"}', '{\"m\": 1}', 'k-1')",
	"SELECT fleetlm.append('c-1', 'alice', 'text', '{\"text\": \"again\"}', '{}', 'k-1')",
	"SELECT fleetlm.append(session_id => 'c-1', sender_id => 'bot', kind => 'text', content => '{\"text\": \"hi\"}')",
	"SELECT fleetlm.append('c-1', 'alice', 'text', '[1, 2]')",
	"SELECT fleetlm.append('c-1', 'alice', 'text', '{}', '\"m\"')",
	"SELECT fleetlm.append('c-1', 'alice', '', '{}')",
	"SELECT fleetlm.append('c-1', NULL, 'text', '{}')",
	"SELECT fleetlm.append('nope', 'alice', 'text', '{}')",
	"SELECT fleetlm.append(NULL, 'alice', 'text', '{}')",
	"SELECT fleetlm.append('c-1', 'alice', 'text', jsonb_build_object('big', repeat('x', 70000)))",
	"SELECT fleetlm.append('c-' || i, 'alice', 'text', jsonb_build_object('i', i)) FROM generate_series(2, 8) i",
	# append_batch
	"SELECT * FROM fleetlm.append_batch('c-2', 'alice', '[{\"kind\": \"text\", \"content\": {\"a\": 1}},"
	  . " {\"kind\": \"text\", \"content\": {\"a\": 2}, \"idempotency_key\": \"b-1\"}]')",
	"SELECT * FROM fleetlm.append_batch('c-2', 'alice', '[{\"kind\": \"text\", \"content\": {\"a\": 2}, \"idempotency_key\": \"b-1\"}]')",
	"SELECT * FROM fleetlm.append_batch('c-2', 'alice', '{}')",
	"SELECT * FROM fleetlm.append_batch('c-2', 'alice', '[{\"content\": {}}]')",
	"SELECT * FROM fleetlm.append_batch('nope', 'alice', '[{\"kind\": \"text\", \"content\": {}}]')",
	# append_many: split by partition on the coordinator, seqs in input order
	"SELECT * FROM fleetlm.append_many(ARRAY['c-3', 'c-4', 'c-3', 'c-5', 'c-6'], ARRAY['alice', 'alice', 'bot', 'alice', 'x'],"
	  . " ARRAY['text', 'text', 'text', 'text', 'tool'], ARRAY['{\"n\": 1}', '{\"n\": 2}', '{\"n\": 3}', '{\"n\": 4}', '5']::jsonb[],"
	  . " ARRAY['{\"a\": 1}', NULL, NULL, NULL, NULL]::jsonb[], ARRAY['am-1', NULL, NULL, 'am-4', NULL])",
	"SELECT * FROM fleetlm.append_many(ARRAY['c-5', 'c-3'], ARRAY['alice', 'alice'], ARRAY['text', 'text'],"
	  . " ARRAY['{}', '{}']::jsonb[], NULL, ARRAY['am-4', 'am-1'])",
	"SELECT count(*) FROM fleetlm.append_many('{}', '{}', '{}', '{}')",
	"SELECT * FROM fleetlm.append_many(NULL, '{}', '{}', '{}')",
	"SELECT * FROM fleetlm.append_many('{c-3,c-4}', '{alice}', '{text}', '{\"{}\"}')",
	"SELECT * FROM fleetlm.append_many('{c-3}', '{alice}', '{text}', '{\"{}\"}', NULL, '{a,b}')",
	"SELECT * FROM fleetlm.append_many('{nope}', '{alice}', '{text}', '{\"{}\"}')",
	# export_session / import_session, routed like the session
	"SELECT (d->'session') - 'created_at', jsonb_array_length(d->'messages'), d->'cursors'"
	  . " FROM fleetlm.export_session('c-3') d",
	"SELECT fleetlm.export_session('nope')",
	"SELECT fleetlm.export_session(NULL)",
	"SELECT fleetlm.import_session('{}')",
	"SELECT fleetlm.import_session(fleetlm.export_session('c-3'))",
	# reads
	"SELECT seq, sender_id, recipient_id, kind, content, metadata, idempotency_key FROM fleetlm.messages('c-1')",
	"SELECT seq, content FROM fleetlm.messages('c-1', 2)",
	"SELECT seq, content FROM fleetlm.messages('c-1', 1, 2)",
	"SELECT seq FROM fleetlm.messages(session_id => 'c-2', max_count => 1)",
	"SELECT seq FROM fleetlm.messages('c-1', 0, 0)",
	"SELECT seq FROM fleetlm.messages('c-1', -1)",
	"SELECT seq FROM fleetlm.messages('nope')",
	"SELECT seq FROM fleetlm.messages(NULL)",
	"SELECT fleetlm.last_seq('c-' || i) FROM generate_series(1, 8) i",
	"SELECT fleetlm.last_seq('nope')",
	"SELECT session_id, user_id, agent_id, metadata, last_seq FROM fleetlm.get_session('c-1')",
	"SELECT (fleetlm.get_session('c-2')).last_seq",
	"SELECT * FROM fleetlm.get_session('nope')",
	"SELECT * FROM fleetlm.get_session('')",
	# cursors
	"SELECT fleetlm.mark_read('c-1', 'alice', 2)",
	"SELECT fleetlm.mark_read('c-1', 'alice', 1)",
	"SELECT fleetlm.mark_read('c-1', 'alice', 99)",
	"SELECT fleetlm.mark_read('c-1', 'alice', -1)",
	"SELECT fleetlm.mark_read('nope', 'alice', 1)",
	# long-polls that find their answer or time out
	"SELECT seq, sender_id, content FROM fleetlm.wait_for_messages('c-1', 1, '5s')",
	"SELECT seq FROM fleetlm.wait_for_messages('c-1', 0, '5s', 2)",
	"SELECT count(*) FROM fleetlm.wait_for_messages('c-1', 100, '0.2s')",
	"SELECT seq FROM fleetlm.wait_for_messages('c-1', 0, '-1s')",
	"SELECT seq FROM fleetlm.wait_for_messages('c-1', 0, '2 days')",
	"SELECT seq FROM fleetlm.wait_for_messages('c-1', 0, '1s', 0)",
	"SELECT seq FROM fleetlm.wait_for_messages('nope', 0, '1s')",
	"SELECT count(*) FROM fleetlm.wait_for_stream('c-1', 1, 0, '0.2s')",
	"SELECT count(*) FROM fleetlm.wait_for_stream('c-1', 0)",
	"SELECT count(*) FROM fleetlm.wait_for_stream('c-1', 1, -1)",
	"SELECT count(*) FROM fleetlm.wait_for_stream('c-1', 1, 0, '-1s')",
	# deletes
	"SELECT fleetlm.delete_session('c-8')",
	"SELECT fleetlm.delete_session('c-8')",
	"SELECT fleetlm.delete_session('nope')",
	"SELECT fleetlm.flush()",
	# the all-shard calls' argument checks
	"SELECT * FROM fleetlm.list_sessions('alice', 0)",
	"SELECT * FROM fleetlm.list_sessions('alice', 100001)",
	"SELECT * FROM fleetlm.list_sessions('alice', NULL)",
	"SELECT * FROM fleetlm.list_sessions(NULL)",
	"SELECT * FROM fleetlm.list_sessions('')",
	"SELECT * FROM fleetlm.list_sessions('alice', 5, 'nope')",
	"SELECT * FROM fleetlm.list_sessions('alice', 0, 'nope')",
	"SELECT * FROM fleetlm.list_sessions('alice', 5, '')",
	"SELECT session_id, last_seq FROM fleetlm.list_sessions('nobody-at-all')",
	"SELECT * FROM fleetlm.inbox('alice', 0)",
	"SELECT * FROM fleetlm.inbox(NULL)",
	"SELECT * FROM fleetlm.inbox('alice', 100001)",
	"SELECT session_id FROM fleetlm.inbox('nobody-at-all')",
	"SELECT fleetlm.flush()",
	# the agent registry's checks
	"SELECT agent_id FROM fleetlm.register_agent('x', 'http://198.51.100.1:1')",
	"SELECT agent_id FROM fleetlm.register_agent('x', '$mock->{url}', 'no-slash')",
	"SELECT agent_id FROM fleetlm.register_agent('x', '$mock->{url}', history_limit => 0)",
	"SELECT agent_id FROM fleetlm.register_agent('', '$mock->{url}')",
	"SELECT agent_id FROM fleetlm.register_agent('x', '$mock->{url}', protocol => 'openai')",
	"SELECT fleetlm.set_agent_status('nope', 'enabled')",
	"SELECT fleetlm.set_agent_status('nope', 'sleepy')",
	# the reply parser
	"SELECT * FROM fleetlm.compact_agent_reply('{\"type\":\"start\",\"messageId\":\"m\"}\n"
	  . "{\"type\":\"text-start\",\"id\":\"t\"}\n{\"type\":\"text-delta\",\"id\":\"t\",\"delta\":\"hi\"}\n"
	  . "{\"type\":\"text-end\",\"id\":\"t\"}\n{\"type\":\"finish\"}\n')",
	"SELECT * FROM fleetlm.compact_agent_reply('x', 'nonsense')",
);
my $errors = 0;
for my $q (@calls)
{
	my $out = same($q);
	$errors++ if $out =~ /^ERROR /;
}
# a deleted session: fleetlm says "has been deleted" while its tombstone is
# in the session table and "does not exist" after, on its own timing
for my $q ("SELECT * FROM fleetlm.get_session('c-8')", "SELECT fleetlm.append('c-8', 'alice', 'text', '{}')",
	"SELECT fleetlm.last_seq('c-8')")
{
	my $gone = qr/^ERROR P0002: fleetlm session "c-8" (has been deleted|does not exist)$/;
	like(result($_, $q), $gone, ($_ == $coord ? 'coordinator' : 'one server') . ": $q")
	  for ($coord, $ref);
	$errors++;
}
cmp_ok($errors, '>=', 40, "the coordinator reported $errors errors with one server's SQLSTATE and message");

# --- 4. ids made on the coordinator, and the spread -------------------------
{
	my $t0 = time;
	my @ids = split /\n/, sql($coord,
		"SELECT fleetlm.create_session('spread', 'bot') FROM generate_series(1, 64)");
	my $t1 = time;
	is(scalar(grep { /^[0-9A-HJKMNP-TV-Z]{26}$/ } @ids), 64, 'ids made on the coordinator are ULIDs');
	my @alphabet = split //, '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
	my %val = map { $alphabet[$_] => $_ } 0 .. 31;
	my ($bad_time, $unsorted, $prev) = (0, 0, 0);
	for my $id (@ids)
	{
		my $ms = 0;
		$ms = $ms * 32 + $val{$_} for split //, substr($id, 0, 10);
		$bad_time++ if $ms < int($t0 * 1000) - 1000 || $ms > $t1 * 1000 + 1000;
		$unsorted++ if $ms < $prev;
		$prev = $ms;
	}
	is($bad_time, 0, 'their first 10 characters are the creation time in ms');
	is($unsorted, 0, 'their time prefixes do not decrease');
	my @has = map { { map { $_ => 1 } split /\n/, sql($_, "SELECT session_id FROM fleetlm.sessions WHERE user_id = 'spread'") } } @shard;
	my %n = (0 => scalar(keys %{ $has[0] }), 1 => scalar(keys %{ $has[1] }));
	my $misplaced = grep { !$has[ shard_of($_) ]{$_} } @ids;
	$misplaced += 64 - $n{0} - $n{1};
	is($misplaced, 0, 'each one is on the shard of its partition, and on no other');
	cmp_ok($n{0} * $n{1}, '>', 0, "64 sessions spread over both shards ($n{0} and $n{1})");
	is(sql($coord, "SELECT count(*) FROM fleetlm.list_sessions('spread', 1000)"), '64',
		'list_sessions on the coordinator sees all 64');
}

# --- 5. list_sessions paged across shards ------------------------------------
# 40 sessions of user pager on the coordinator and on ref, then the same
# created_at on both, in groups of three: ties inside a shard and across
# shards, resolved by session id.  One is deleted and not listed.
{
	my $mk = "SELECT fleetlm.create_session('pager', 'bot', jsonb_build_object('i', i), 'pg-' || lpad(i::text, 2, '0'))"
	  . " FROM generate_series(1, 40) i";
	sql($_, $mk) for ($coord, $ref);
	my $fix = "UPDATE fleetlm.sessions SET created_at = timestamptz '2030-01-01 00:00:00+00'"
	  . " + (substr(session_id, 4)::int / 3) * interval '1 second' WHERE user_id = 'pager'";
	sql($_, $fix) for (@shard, $ref);
	for my $q ("SELECT fleetlm.append('pg-' || lpad(i::text, 2, '0'), 'pager', 'text', '{}')"
		  . " FROM generate_series(1, 40, 7) i",
		"SELECT fleetlm.delete_session('pg-17')")
	{
		sql($_, $q) for ($coord, $ref);
	}
	my %cnt = map { $_ => sql($shard[$_], "SELECT count(*) FROM fleetlm.sessions WHERE user_id = 'pager'") } 0, 1;
	cmp_ok($cnt{0} * $cnt{1}, '>', 0, "pager's sessions are on both shards ($cnt{0} and $cnt{1})");

	my $all = same("SELECT session_id, user_id, agent_id, metadata, created_at, last_seq"
		  . " FROM fleetlm.list_sessions('pager', 1000)", label => 'list_sessions, one page');
	my @want = split /\n/, $all;
	is(scalar(@want), 39, 'one page lists the 39 sessions left');
	for my $size (1, 2, 3, 5, 7, 39, 40)
	{
		my (@got, $before);
		my ($pages, $differ) = (0, 0);
		while (1)
		{
			my $b = defined $before ? "'$before'" : 'NULL';
			my $q = "SELECT session_id, user_id, agent_id, metadata, created_at, last_seq"
			  . " FROM fleetlm.list_sessions('pager', $size, $b)";
			my $page = result($coord, $q);
			$differ++ if $page ne result($ref, $q);
			last if $page eq '' || $page =~ /^ERROR/ || ++$pages > 100;
			my @rows = split /\n/, $page;
			push @got, @rows;
			($before) = split /\|/, $rows[-1];
		}
		is($differ, 0, "pages of $size: each page as on one server");
		is_deeply(\@got, \@want, "pages of $size: every session once, in order ($pages pages)");
	}
	same("SELECT session_id FROM fleetlm.list_sessions('pager', 5, 'c-3')",
		label => "list_sessions before another user's session");
	sql($_, 'SELECT fleetlm.flush()') for ($coord, $ref);
	same("SELECT session_id FROM fleetlm.list_sessions('pager', 5, 'pg-17')",
		label => 'list_sessions before a deleted session, applied');
}

# --- 6. inbox -----------------------------------------------------------------
# The same operations in lockstep on the coordinator and on ref, so that
# the sessions' activity has the same order on both; four sessions without
# messages get equal created_at (ties broken by id, in byte order).
{
	for my $q ("SELECT fleetlm.create_session('ib', 'bot', '{}', 'ib-' || i) FROM generate_series(1, 10) i",
		map({ "SELECT fleetlm.append('ib-$_', 'ib', 'text', '{\"n\": $_}')" } 3, 1, 5, 2, 3, 6, 4),
		"SELECT fleetlm.append('ib-1', 'bot', 'text', '{\"reply\": 1}')",
		"SELECT fleetlm.mark_read('ib-3', 'ib', 1)",
		"SELECT fleetlm.mark_read('ib-1', 'ib', 2)")
	{
		sql($_, $q) for ($coord, $ref);
	}
	my $fix = "UPDATE fleetlm.sessions SET created_at = CASE WHEN session_id IN ('ib-7', 'ib-10')"
	  . " THEN timestamptz '2099-01-01 00:00:00+00' ELSE timestamptz '2020-01-01 00:00:00+00' END"
	  . " WHERE session_id IN ('ib-7', 'ib-8', 'ib-9', 'ib-10')";
	sql($_, $fix) for (@shard, $ref);
	my %cnt = map { $_ => sql($shard[$_], "SELECT count(*) FROM fleetlm.sessions WHERE user_id = 'ib'") } 0, 1;
	cmp_ok($cnt{0} * $cnt{1}, '>', 0, "ib's sessions are on both shards ($cnt{0} and $cnt{1})");
	for my $n (1, 3, 6, 10, 100)
	{
		same("SELECT session_id, agent_id, last_seq, last_message_at IS NOT NULL, last_sender_id,"
			  . " last_read_seq, unread_count FROM fleetlm.inbox('ib', $n)",
			label => "inbox of ib, $n rows");
	}
	is(join(' ', split /\n/, sql($coord, "SELECT session_id FROM fleetlm.inbox('ib')")),
		'ib-7 ib-10 ib-1 ib-4 ib-6 ib-3 ib-2 ib-5 ib-9 ib-8',
		'inbox: most recent activity first, ties by id descending');
}

# --- 7. flush and stats -------------------------------------------------------
{
	sql($coord, 'SELECT fleetlm.flush()');
	my $moved = 0;
	for my $s (@c[0 .. 6])
	{
		my $i = shard_of($s);
		$moved++ if sql($shard[$i], "SELECT count(*) FROM fleetlm.messages WHERE session_id = '$s'")
		  eq sql($coord, "SELECT fleetlm.last_seq('$s')");
	}
	is($moved, 7, "after flush() through the coordinator every shard's table holds its messages");

	my @cols = qw(appends append_bytes fsyncs applied_lsn durable_lsn active_sessions ring_size shmem_size);
	my $list = join(', ', @cols);
	# active_sessions drops whenever a shard's applier evicts a session idle
	# for 10 s, which can happen between the shards' reads and the
	# coordinator's: read again until the shards' stats are the same after
	# the coordinator's reads as before them.
	my (@per, @sum, $stat, $rows);
	for my $try (1 .. 10)
	{
		@per = map { [ split /\|/, sql($_, "SELECT $list FROM fleetlm.stat") ] } @shard;
		@sum = map { $per[0][$_] + $per[1][$_] } 0 .. $#cols;
		$stat = sql($coord, "SELECT $list FROM fleetlm.stat");
		$rows = sql($coord, "SELECT shard || ' ' || partitions::text || ' ' || " . join(" || ' ' || ", @cols)
			  . " FROM fleetlm.shard_stats() ORDER BY shard");
		my @again = map { sql($_, "SELECT $list FROM fleetlm.stat") } @shard;
		last if join("\n", @again) eq join("\n", map { join('|', @$_) } @per);
	}
	is($stat, join('|', @sum), "fleetlm.stat sums the shards ($list)");
	is($rows,
		join("\n", map { "$_ " . ('{0,2,4,6}', '{1,3,5,7}')[$_] . " @{ $per[$_] }" } 0, 1),
		'shard_stats: one row per shard with its partitions and its own stats');
	is(sql($coord, "SELECT state, round(records_per_fsync::numeric, 6), writer_pid IS NULL,"
		  . " wal_directory LIKE '0: %, 1: %' FROM fleetlm.stat"),
		"ready|" . sprintf('%.6f', ($per[0][0] + $per[1][0]) / ($per[0][2] + $per[1][2])) . '|t|t',
		'stats: common state, records_per_fsync over all fsyncs, no pid, each wal_directory');
}

# --- 8. agents: registered on every shard, a turn through the proxy ---------
{
	my $reg = "SELECT agent_id, name, origin_url, webhook_path, protocol, history_mode, history_limit,"
	  . " timeout_ms, debounce_ms, max_concurrency, max_attempts, headers, secret_headers, model,"
	  . " status, metadata FROM fleetlm.register_agent('echo', '$mock->{url}', '/jsonl',"
	  . " debounce_ms => 0, name => 'Echo')";
	same($reg, label => 'register_agent');
	is(join(' ', map { sql($_, "SELECT count(*) FROM fleetlm.agents WHERE agent_id = 'echo' AND debounce_ms = 0") } @shard),
		'1 1', 'the agent is registered on every shard');
	my @ag = grep { shard_of($_) == 0 } map { "ag-$_" } 1 .. 20;
	my @ag1 = grep { shard_of($_) == 1 } map { "ag-$_" } 1 .. 20;
	my @turn = ($ag[0], $ag1[0]);
	for my $s (@turn)
	{
		sql($coord, "SELECT fleetlm.create_session('alice', 'echo', '{}', '$s')");
		sql($coord, "SELECT fleetlm.append('$s', 'alice', 'text', '{\"text\": \"hi $s\"}')");
	}
	for my $s (@turn)
	{
		my $got = sql($coord, "SELECT sender_id || ' ' || kind || ' ' || (SELECT string_agg(p->>'text', '')"
			  . " FROM jsonb_array_elements(content->'parts') p WHERE p->>'type' = 'text')"
			  . " FROM fleetlm.wait_for_messages('$s', 1, '30s')");
		is($got, "echo assistant echo: hi $s", "a turn through the proxy on shard " . shard_of($s));
	}
	my $s = $turn[1];
	my $stream = "SELECT string_agg(chunk_no || ':' || done || ':' || coalesce(chunk->>'type', ''), ' ' ORDER BY chunk_no)"
	  . " FROM fleetlm.wait_for_stream('$s', 1, 0, '5s')";
	my $got = sql($coord, $stream);
	like($got, qr/:true:|:t:/, "wait_for_stream through the proxy: the answered turn is done ($got)");
	is($got, sql($shard[1], $stream), 'wait_for_stream through the proxy returns what the shard does');
	$coord->poll_query_until('postgres', 'SELECT count(*) = 0 FROM fleetlm.agent_turns')
	  or diag('agent_turns not empty');
	is(sql($coord, 'SELECT turns_completed FROM fleetlm.stat'), '2',
		'the turns of both shards are counted in stats');
	same("SELECT fleetlm.set_agent_status('echo', 'disabled')", label => 'set_agent_status');
	is(join(' ', map { sql($_, "SELECT status FROM fleetlm.agents WHERE agent_id = 'echo'") } @shard),
		'disabled disabled', 'set_agent_status reached every shard');
}

# --- 9. privileges: the same roles allow and refuse the same calls ----------
{
	for my $n ($coord, $ref)
	{
		sql($n, 'CREATE ROLE r_reader IN ROLE fleetlm_reader; CREATE ROLE r_writer IN ROLE fleetlm_writer;'
			  . ' CREATE ROLE r_admin IN ROLE fleetlm_admin; CREATE ROLE r_none');
	}
	my %calls = (
		r_reader => [ "SELECT count(*) FROM fleetlm.messages('c-1')",
			"SELECT count(*) FROM fleetlm.list_sessions('pager', 3)",
			"SELECT count(*) FROM fleetlm.inbox('ib', 3)", 'SELECT state FROM fleetlm.stat',
			"SELECT fleetlm.append('c-1', 'alice', 'text', '{}')",
			"SELECT fleetlm.create_session('alice', 'bot')", 'SELECT fleetlm.flush()',
			"SELECT fleetlm.set_agent_status('echo', 'enabled')" ],
		r_writer => [ "SELECT fleetlm.append('c-1', 'alice', 'text', '{\"by\": \"writer\"}')",
			"SELECT length(fleetlm.create_session('alice', 'bot'))", 'SELECT fleetlm.flush()',
			"SELECT fleetlm.last_seq('c-1')", "SELECT count(*) FROM fleetlm.agent_turns",
			"SELECT agent_id FROM fleetlm.register_agent('echo', '$mock->{url}', '/jsonl')" ],
		r_admin => [ "SELECT fleetlm.set_agent_status('echo', 'enabled')",
			'SELECT count(*) FROM fleetlm.agent_turns', "SELECT fleetlm.last_seq('c-1')" ],
		r_none => [ "SELECT fleetlm.last_seq('c-1')", 'SELECT * FROM fleetlm.stat' ]);
	for my $role (sort keys %calls)
	{
		same($_, role => $role) for @{ $calls{$role} };
	}
}

# --- 10. wait_for_messages through the proxy, woken by an append -------------
{
	for my $i (0, 1)
	{
		my ($s) = grep { shard_of($_) == $i } @c[0 .. 6];
		my $last = sql($coord, "SELECT fleetlm.last_seq('$s')");
		my $waiter = start_waiter($coord, $shard[$i],
			"SELECT string_agg(seq || ' ' || (content->>'wake'), ',') AS got"
			  . " FROM fleetlm.wait_for_messages('$s', $last, '60s') \\gset\n"
			  . "SELECT 'woke ' || :'got' || ' ' || extract(epoch FROM clock_timestamp());");
		my $t0 = time;
		sql($coord, "SELECT fleetlm.append('$s', 'bob', 'text', '{\"wake\": \"up\"}')");
		my $out = $waiter->query_until(qr/woke .*\n/, '');
		my $dt = time - $t0;
		$waiter->quit;
		like($out, qr/woke ${\($last + 1)} up /, "shard $i: the waiter got the appended message");
		cmp_ok($dt, '<', 5, sprintf('shard %d: woken %.0f ms after the append began (timeout 60 s)', $i, $dt * 1000));
	}
}

# a long-poll cancelled on the coordinator stops waiting on its shard
{
	my ($s) = grep { shard_of($_) == 1 } @c[0 .. 6];
	my $waiter = start_waiter($coord, $shard[1],
		"SELECT * FROM fleetlm.wait_for_messages('$s', 1000000, '60s');");
	my $t0 = time;
	is(sql($coord, "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity"
		  . " WHERE query LIKE '%wait_for_messages(%' AND pid <> pg_backend_pid()"), '1',
		'a waiting coordinator backend is cancelled');
	ok($shard[1]->poll_query_until('postgres', "SELECT ($WAITING) = 0"),
		sprintf('the cancel reached the shard: its backend stopped waiting (%.0f ms)', (time - $t0) * 1000));
	my ($out) = $waiter->query("SELECT 'still here'");
	is($out, 'still here', 'the cancelled session goes on');
	like($waiter->{stderr}, qr/canceling statement due to user request/, 'the waiter got the cancel error');
	$waiter->quit;
}

# --- 11. a shard stopped, then started -----------------------------------------
{
	my ($s0) = grep { shard_of($_) == 0 } @c[0 .. 6];
	my ($s1) = grep { shard_of($_) == 1 } @c[0 .. 6];
	my $seq1 = sql($coord, "SELECT fleetlm.last_seq('$s1')");
	$shard[1]->stop('fast');
	my $down = qr/^ERROR XX000: PL\/Proxy function \S+: \[postgres\] \w+: connection to server .*${\($shard[1]->port)}.* failed/;
	like(result($coord, "SELECT fleetlm.append('$s0', 'alice', 'text', '{\"while\": \"down\"}')"), qr/^\d+$/,
		'shard 1 down: appends to a session of shard 0 work');
	like(result($coord, "SELECT count(*) FROM fleetlm.messages('$s0')"), qr/^\d+$/,
		'shard 1 down: reads of a session of shard 0 work');
	my ($dn) = grep { shard_of($_) == 0 } map { "dn-$_" } 1 .. 20;
	is(result($coord, "SELECT fleetlm.create_session('alice', 'bot', '{}', '$dn')"), $dn,
		'shard 1 down: sessions of shard 0 are created');
	for my $q ("SELECT fleetlm.append('$s1', 'alice', 'text', '{}')", "SELECT fleetlm.last_seq('$s1')",
		"SELECT * FROM fleetlm.get_session('$s1')")
	{
		like(result($coord, $q), $down, "shard 1 down: its session fails with a connection error: $q");
	}
	for my $q ("SELECT * FROM fleetlm.list_sessions('pager')", "SELECT * FROM fleetlm.list_sessions('pager', 5, 'pg-02')",
		"SELECT * FROM fleetlm.inbox('ib')", 'SELECT * FROM fleetlm.stat', 'SELECT fleetlm.flush()',
		'SELECT * FROM fleetlm.shard_stats()', "SELECT fleetlm.set_agent_status('echo', 'enabled')")
	{
		like(result($coord, $q), $down, "shard 1 down: all-shard call fails as a whole: $q");
	}
	$shard[1]->start;
	wait_ready($shard[1]);
	my $after = '';
	for (1 .. 50)
	{
		$after = result($coord, "SELECT fleetlm.last_seq('$s1')");
		last if $after !~ /^ERROR/;
		usleep(100_000);
	}
	is($after, $seq1, 'shard 1 started: its session is back with its messages');
	like(result($coord, "SELECT fleetlm.append('$s1', 'alice', 'text', '{\"after\": \"restart\"}')"),
		qr/^${\($seq1 + 1)}$/, 'shard 1 started: appends continue its seqs');
	is(result($coord, "SELECT count(*) FROM fleetlm.list_sessions('pager', 1000)"), '39',
		'shard 1 started: list_sessions sees both shards again');
}

# --- 12. the extension drops and comes back ------------------------------------
{
	sql($coord, 'DROP EXTENSION fleetlm_proxy; CREATE EXTENSION fleetlm_proxy;'
		  . ' GRANT USAGE ON FOREIGN SERVER fleetlm_cluster TO fleetlm_reader, fleetlm_admin');
	is(sql($coord, "SELECT count(*) FROM fleetlm.list_sessions('pager', 1000)"), '39',
		'DROP EXTENSION fleetlm_proxy and CREATE again: the cluster is reachable again');
}

$_->stop for ($coord, @shard, $ref);
stop_mock_agent($mock);
done_testing();

--
-- fleetlm_agents: the agent registry (register_agent, set_agent_status),
-- every check of its arguments with its SQLSTATE and proof that none of
-- them wrote anything, and fleetlm.agent_url_allowlist.
--

-- the allowlist is empty by default: no URL is allowed
SELECT current_setting('fleetlm.agent_url_allowlist') = '' AS allowlist_empty;
SELECT try($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081')$$);
SELECT count(*) FROM fleetlm.agents;

-- it is reloadable (PGC_SIGHUP), not settable in a session
SELECT try($$SET fleetlm.agent_url_allowlist = 'http://127.0.0.1:8081/'$$);

-- a bad entry is refused, naming it
\set VERBOSITY terse
ALTER SYSTEM SET fleetlm.agent_url_allowlist = 'http://127.0.0.1:8081/, ftp://files.example.com/';
ALTER SYSTEM SET fleetlm.agent_url_allowlist = '127.0.0.1:8081';
ALTER SYSTEM SET fleetlm.agent_url_allowlist = 'https://user:secret@api.example.com/';
ALTER SYSTEM SET fleetlm.agent_url_allowlist = 'https://api.example.com/v1?key=1';
ALTER SYSTEM SET fleetlm.agent_url_allowlist = 'https://api.example.com/v1#top';
ALTER SYSTEM SET fleetlm.agent_url_allowlist = 'http://127.0.0.1:65536/';
ALTER SYSTEM SET fleetlm.agent_url_allowlist = 'http://127.0.0.1:/';
ALTER SYSTEM SET fleetlm.agent_url_allowlist = 'http:///agents';
ALTER SYSTEM SET fleetlm.agent_url_allowlist = 'https://api.example.com/v1/../admin';
ALTER SYSTEM SET fleetlm.agent_url_allowlist = 'https://api.example.com/a b';
\set VERBOSITY default
SHOW fleetlm.agent_url_allowlist;

-- allow three prefixes; wait until this backend has reloaded
ALTER SYSTEM SET fleetlm.agent_url_allowlist =
    'http://127.0.0.1:8081/, , https://API.example.com/v1 , http://[::1]:9000/agents/';
SELECT pg_reload_conf();
\set ECHO none
\o /dev/null
SELECT format('SELECT pg_sleep(0.1) WHERE current_setting(%L) = %L',
              'fleetlm.agent_url_allowlist', '')
  FROM generate_series(1, 100) \gexec
\o
\set ECHO all
SHOW fleetlm.agent_url_allowlist;

-- register with the defaults
SELECT agent_id, name, origin_url, webhook_path, protocol, history_mode,
       history_limit, timeout_ms, debounce_ms, max_concurrency, max_attempts,
       headers, secret_headers, model, status, metadata,
       created_at = updated_at AS same_times
  FROM fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081');

-- every setting
SELECT agent_id, name, origin_url, webhook_path, protocol, history_mode,
       history_limit, timeout_ms, debounce_ms, max_concurrency, max_attempts,
       headers, secret_headers, model, status
  FROM fleetlm.register_agent('gpt-bot', 'https://api.example.com',
        '/v1/chat/completions', 'openai', 'entire', 1, 100, 0, 1, 1,
        '{"X-Org": "acme", "Accept": "text/event-stream"}',
        '{"Authorization": "OPENAI_API_KEY"}', 'GPT bot', 'gpt-4o-mini');

-- set_agent_status
SELECT fleetlm.set_agent_status('echo-bot', 'disabled');
SELECT agent_id, status FROM fleetlm.agents ORDER BY agent_id;

-- the upsert changes every setting, keeps created_at, status and metadata,
-- and sets updated_at
UPDATE fleetlm.agents
   SET created_at = created_at - interval '1 hour',
       updated_at = updated_at - interval '1 hour',
       metadata = '{"team": "support"}'
 WHERE agent_id = 'echo-bot';
CREATE TEMP TABLE echo_before AS
    SELECT created_at, updated_at FROM fleetlm.agents WHERE agent_id = 'echo-bot';
SELECT a.webhook_path, a.history_mode, a.history_limit, a.headers, a.name,
       a.status, a.metadata, a.created_at = b.created_at AS created_kept,
       a.updated_at > b.updated_at AS updated
  FROM fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', '/hooks/echo',
        history_mode => 'last', history_limit => 20,
        headers => '{"X-Team": "support"}', name => 'Echo') a,
       echo_before b;
SELECT count(*) FROM fleetlm.agents;
SELECT fleetlm.set_agent_status('echo-bot', 'enabled');

-- readers' view
SELECT * FROM fleetlm.agents_public ORDER BY agent_id;

-- the allowlist: scheme, host (any case), port (80/443 by default) and a
-- path prefix at a '/' boundary
SELECT t.origin_url, t.webhook_path,
       try(format('SELECT fleetlm.register_agent(%L, %L, %L)',
                          'url-bot', t.origin_url, t.webhook_path)) AS result
  FROM (VALUES
    ('http://127.0.0.1:8081', '/webhook'),
    ('http://127.0.0.1:8081', '/'),
    ('HTTP://127.0.0.1:8081', '/any/path?x=1'),
    ('http://127.0.0.1:8082', '/webhook'),
    ('https://127.0.0.1:8081', '/webhook'),
    ('http://localhost:8081', '/webhook'),
    ('http://127.0.0.1', '/webhook'),
    ('https://api.example.com', '/v1'),
    ('https://API.EXAMPLE.COM:443', '/v1/chat/completions'),
    ('https://api.example.com/v1', '/chat/completions'),
    ('https://api.example.com', '/v10/chat'),
    ('https://api.example.com', '/v2'),
    ('https://api.example.com', '/'),
    ('https://api.example.com:8443', '/v1'),
    ('http://api.example.com', '/v1'),
    ('https://api.example.com.evil.test', '/v1'),
    ('http://[::1]:9000', '/agents/x'),
    ('http://[::1]:9000', '/agents'),
    ('http://[::1]:9000', '/agentsx'),
    ('http://[0:0:0:0:0:0:0:1]:9000', '/agents/x')
  ) AS t(origin_url, webhook_path);
SELECT fleetlm.set_agent_status('url-bot', 'disabled');
DELETE FROM fleetlm.agents WHERE agent_id = 'url-bot';

-- every bad argument: an error naming the value and the limit
CREATE TEMP TABLE agents_before AS SELECT * FROM fleetlm.agents;
SELECT t.call, try(t.call) AS result
  FROM (VALUES
    -- NULLs
    ($$SELECT fleetlm.register_agent(NULL, 'http://127.0.0.1:8081')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', NULL)$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', NULL)$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', protocol => NULL)$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', history_mode => NULL)$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', history_limit => NULL)$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', timeout_ms => NULL)$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', debounce_ms => NULL)$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', max_concurrency => NULL)$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', max_attempts => NULL)$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', headers => NULL)$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', secret_headers => NULL)$$),
    -- agent_id: the rules of every id
    ($$SELECT fleetlm.register_agent('', 'http://127.0.0.1:8081')$$),
    ($$SELECT fleetlm.register_agent(repeat('a', 65), 'http://127.0.0.1:8081')$$),
    -- origin_url
    ($$SELECT fleetlm.register_agent('echo-bot', 'ftp://127.0.0.1:8081')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', '127.0.0.1:8081')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http:/127.0.0.1:8081')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', '')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://:8081')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://user:pw@127.0.0.1:8081')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://evil.test@127.0.0.1:8081')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081?token=1')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081#top')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081/')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:0')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:65536')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:80a')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081:8082')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://exa%6dple.com')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://[::1')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://[]:9000')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://[fe80::1%eth0]:9000')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081 /x')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', E'http://127.0.0.1:8081\n')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081\evil.test')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://bücher.example')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081/' || repeat('p', 2040))$$),
    -- webhook_path
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', 'webhook')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', '')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', '/webhook#part')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', '//evil.test/webhook')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', '/a//b')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'https://api.example.com', '/v1/../admin')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'https://api.example.com', '/v1/%2E%2e/admin')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'https://api.example.com', '/v1/./chat')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'https://api.example.com', '/v1/chat/..')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', E'/webhook\r\nX-Evil: 1')$$),
    -- protocol, history_mode
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', protocol => 'grpc')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', protocol => 'OpenAI')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', protocol => 'openai')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', history_mode => 'first')$$),
    -- the bounds
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', history_limit => 0)$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', history_limit => 10001)$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', timeout_ms => 99)$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', timeout_ms => 600001)$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', debounce_ms => -1)$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', debounce_ms => 60001)$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', max_concurrency => 0)$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', max_concurrency => 1001)$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', max_attempts => 0)$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', max_attempts => 101)$$),
    -- headers
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', headers => '[]')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', headers => '"X-A: 1"')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', headers => '{"X-A": 1}')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', headers => '{"X-A": null}')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', headers => '{"X-A": ["a"]}')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', headers => '{"X A": "1"}')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', headers => '{"X-A:": "1"}')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', headers => '{"": "1"}')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', headers => '{"X-Ä": "1"}')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', headers => '{"X-A": "a\r\nX-Evil: 1"}')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', headers => '{"X-A": "a\nb"}')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', headers => '{"X-A": "a\u0001b"}')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', headers => '{"content-type": "text/plain"}')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', headers => '{"Content-Length": "0"}')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', headers => '{"HOST": "evil.test"}')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', headers => '{"Idempotency-Key": "k"}')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', headers => '{"Transfer-Encoding": "chunked"}')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', headers => '{"Connection": "close"}')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', headers => '{"X-A": "1", "x-a": "2"}')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', headers => jsonb_build_object('X-A', repeat('v', 8193)))$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', headers => (SELECT jsonb_object_agg('X-H' || i, 'v') FROM generate_series(1, 65) i))$$),
    -- secret_headers: header names to secret names, never secrets
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', secret_headers => '[]')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', secret_headers => '{"Authorization": 1}')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', secret_headers => '{"Authorization": "Bearer sk-live-123"}')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', secret_headers => '{"Authorization": "1_KEY"}')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', secret_headers => '{"Authorization": ""}')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', secret_headers => jsonb_build_object('Authorization', repeat('K', 65)))$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', secret_headers => '{"Auth orization": "KEY"}')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', secret_headers => '{"Host": "KEY"}')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', headers => '{"X-Key": "a"}', secret_headers => '{"x-key": "KEY"}')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', headers => (SELECT jsonb_object_agg('X-H' || i, 'v') FROM generate_series(1, 60) i), secret_headers => '{"A": "K1", "B": "K2", "C": "K3", "D": "K4", "E": "K5"}')$$),
    -- name, model
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', name => '')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', name => repeat('n', 257))$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', model => '')$$),
    ($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081', model => repeat('m', 257))$$),
    -- set_agent_status
    ($$SELECT fleetlm.set_agent_status(NULL, 'enabled')$$),
    ($$SELECT fleetlm.set_agent_status('echo-bot', NULL)$$),
    ($$SELECT fleetlm.set_agent_status('', 'enabled')$$),
    ($$SELECT fleetlm.set_agent_status(repeat('a', 65), 'enabled')$$),
    ($$SELECT fleetlm.set_agent_status('echo-bot', 'on')$$),
    ($$SELECT fleetlm.set_agent_status('echo-bot', 'Disabled')$$),
    ($$SELECT fleetlm.set_agent_status('no-such-agent', 'disabled')$$)
  ) AS t(call);

-- nothing was written
SELECT (SELECT count(*) FROM fleetlm.agents) AS agents,
       NOT EXISTS (SELECT * FROM fleetlm.agents EXCEPT SELECT * FROM agents_before)
       AND NOT EXISTS (SELECT * FROM agents_before EXCEPT SELECT * FROM fleetlm.agents)
       AS unchanged;

-- limits at their edge are accepted
SELECT agent_id = repeat('a', 64) AS long_id, history_limit, timeout_ms,
       debounce_ms, max_concurrency, max_attempts,
       (SELECT count(*) FROM jsonb_object_keys(headers)) AS headers,
       secret_headers, length(name) AS name_len, length(model) AS model_len
  FROM fleetlm.register_agent(repeat('a', 64), 'http://127.0.0.1:8081',
        '/' || repeat('p', 2048 - 22), 'fleetlm', 'tail', 10000, 600000, 60000,
        1000, 100,
        (SELECT jsonb_object_agg('X-H' || i, repeat('v', 8192)) FROM generate_series(1, 63) i),
        jsonb_build_object('Authorization', 'K' || repeat('_', 63)),
        repeat('n', 256), repeat('m', 256));
SELECT history_limit, timeout_ms, debounce_ms, max_concurrency, max_attempts
  FROM fleetlm.register_agent(repeat('a', 64), 'http://127.0.0.1:8081',
        history_limit => 1, timeout_ms => 100, debounce_ms => 0,
        max_concurrency => 1, max_attempts => 1);
DELETE FROM fleetlm.agents WHERE agent_id = repeat('a', 64);

-- the table's CHECKs hold rows written by hand to the same rules
SELECT try($$UPDATE fleetlm.agents SET protocol = 'grpc'$$);
SELECT try($$UPDATE fleetlm.agents SET history_mode = 'first'$$);
SELECT try($$UPDATE fleetlm.agents SET history_limit = 0$$);
SELECT try($$UPDATE fleetlm.agents SET timeout_ms = 600001$$);
SELECT try($$UPDATE fleetlm.agents SET debounce_ms = -1$$);
SELECT try($$UPDATE fleetlm.agents SET max_concurrency = 1001$$);
SELECT try($$UPDATE fleetlm.agents SET max_attempts = 0$$);
SELECT try($$UPDATE fleetlm.agents SET status = 'paused'$$);
SELECT try($$UPDATE fleetlm.agents SET headers = '[]'$$);
SELECT try($$UPDATE fleetlm.agents SET secret_headers = '"KEY"'$$);
SELECT try($$INSERT INTO fleetlm.agents (agent_id, origin_url) VALUES ('', 'http://x')$$);
SELECT try($$INSERT INTO fleetlm.agents (agent_id) VALUES ('no-url')$$);

-- once the allowlist no longer has the prefix, registration is refused
-- (the dispatcher is to check it again before each call)
ALTER SYSTEM SET fleetlm.agent_url_allowlist = 'https://api.example.com/v1/';
SELECT pg_reload_conf();
\set ECHO none
\o /dev/null
SELECT format('SELECT pg_sleep(0.1) WHERE current_setting(%L) <> %L',
              'fleetlm.agent_url_allowlist', 'https://api.example.com/v1/')
  FROM generate_series(1, 100) \gexec
\o
\set ECHO all
SELECT try($$SELECT fleetlm.register_agent('echo-bot', 'http://127.0.0.1:8081')$$);
SELECT try($$SELECT fleetlm.register_agent('gpt-bot', 'https://api.example.com', '/v1', 'openai', model => 'm')$$);
SELECT try($$SELECT fleetlm.register_agent('gpt-bot', 'https://api.example.com', '/v1/chat/completions', 'openai', model => 'm')$$);

-- back to the default
ALTER SYSTEM RESET fleetlm.agent_url_allowlist;
SELECT pg_reload_conf();
\set ECHO none
\o /dev/null
SELECT format('SELECT pg_sleep(0.1) WHERE current_setting(%L) <> %L',
              'fleetlm.agent_url_allowlist', '')
  FROM generate_series(1, 100) \gexec
\o
\set ECHO all
SHOW fleetlm.agent_url_allowlist;
DELETE FROM fleetlm.agents;

-- One agent turn: the session's user appends a message, then the client
-- long-polls until the agent's reply is durable.  Each pgbench client owns
-- one session, turn-<client_id + 1> (user tu-<i>, agent bench-agent: the
-- instant mock agent bench/mock_agent, debounce 0, history_mode 'tail',
-- history_limit 50), created by bench/run.  Only the answer can come after
-- :seq: wait_for_messages returns it alone, once durable.  It must be the
-- agent's reply (kind 'assistant'); an agent_error (the dispatcher gave up
-- after max_attempts) or a timeout (0 rows) counts 0, and the division by
-- zero fails the transaction (pgbench 15 aborts that client).
--   pgbench -n -M prepared -c 32 -f bench/turn.sql
\set i :client_id + 1
SELECT fleetlm.append('turn-' || :i, 'tu-' || :i, 'text', '{"text": "hi"}') AS seq \gset
SELECT 1 / count(*) FILTER (WHERE kind = 'assistant')::int FROM fleetlm.wait_for_messages('turn-' || :i, :seq, '10s');

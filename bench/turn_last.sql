-- bench/turn.sql with the agent bench-agent-last (history_mode 'last': the
-- request carries only the turn's message, not the last 50): sessions
-- turnl-<client_id + 1>, user tu-<i>, created by bench/run.
--   pgbench -n -M prepared -c 32 -f bench/turn_last.sql
\set i :client_id + 1
SELECT fleetlm.append('turnl-' || :i, 'tu-' || :i, 'text', '{"text": "hi"}') AS seq \gset
SELECT 1 / count(*) FILTER (WHERE kind = 'assistant')::int FROM fleetlm.wait_for_messages('turnl-' || :i, :seq, '10s');

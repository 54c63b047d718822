-- Baseline: what fleetlm.append replaces, a durable plain insert with a
-- per-session gapless seq (the session row lock serialises a session's
-- writers), in one transaction.  Tables: bench/setup.sql.  Run it with the
-- server's synchronous_commit = on (durable), and with
--   PGOPTIONS='-c synchronous_commit=off'
-- for the non-durable variant.
--   pgbench -n -M prepared -D nsessions=1000 -f bench/plain_insert.sql
\set s random(1, :nsessions)
BEGIN;
UPDATE bench_plain_sessions SET last_seq = last_seq + 1 WHERE id = :s RETURNING last_seq \gset
INSERT INTO bench_plain_messages (session_id, seq, sender, kind, content)
    VALUES ('bench-' || :s, :last_seq, 'user-' || :s, 'text', '{"text": "Hi, I was charged twice for my subscription this month. Could you check invoice 4417 for me?"}');
COMMIT;

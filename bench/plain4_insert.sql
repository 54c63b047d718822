-- Extra baseline (plain4_sync, plain4_async): bench/plain_insert.sql in four
-- round trips, BEGIN; UPDATE ... RETURNING \gset; INSERT; COMMIT, the
-- baseline of the benchmark before issue 10.  Same tables, same columns
-- filled.  Not what the goals compare with.
--   pgbench -n -M prepared -D nsessions=1000 -f bench/plain4_insert.sql
\set s random(1, :nsessions)
BEGIN;
UPDATE bench_plain_sessions SET last_seq = last_seq + 1 WHERE session_id = 'bench-' || :s AND user_id = 'user-' || :s RETURNING agent_id, last_seq \gset
INSERT INTO bench_plain_messages (session_id, seq, sender_id, recipient_id, kind, content, metadata, inserted_at)
    VALUES ('bench-' || :s, :last_seq, 'user-' || :s, :agent_id, 'text', '{"text": "Hi, I was charged twice for my subscription this month. Could you check invoice 4417 for me?"}', '{}', now());
COMMIT;

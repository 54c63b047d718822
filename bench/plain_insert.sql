-- Baseline: what fleetlm.append replaces, written as an application would,
-- in one statement and one round trip: the session row holds the last seq
-- (its row lock serialises the session's writers, the seq is gapless), and
-- the message row gets the columns the fleetlm append fills (sender, the
-- session's agent as recipient, kind, content, metadata '{}', inserted_at;
-- no idempotency key).  Tables: bench/setup.sql (bench_plain_messages is
-- LIKE fleetlm.messages INCLUDING ALL: same columns, primary key and
-- partial idempotency-key index).  Run it with the server's
-- synchronous_commit = on (plain_sync, durable), and with
--   PGOPTIONS='-c synchronous_commit=off'
-- for plain_async.  bench/plain4_insert.sql is the four-round-trip version.
--   pgbench -n -M prepared -D nsessions=1000 -f bench/plain_insert.sql
\set s random(1, :nsessions)
WITH s AS (UPDATE bench_plain_sessions SET last_seq = last_seq + 1
            WHERE session_id = 'bench-' || :s AND user_id = 'user-' || :s
            RETURNING session_id, user_id, agent_id, last_seq)
INSERT INTO bench_plain_messages (session_id, seq, sender_id, recipient_id, kind, content, metadata, inserted_at)
SELECT s.session_id, s.last_seq, s.user_id, s.agent_id, 'text', '{"text": "Hi, I was charged twice for my subscription this month. Could you check invoice 4417 for me?"}', '{}', now() FROM s;

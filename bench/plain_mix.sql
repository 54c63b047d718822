-- Baseline of mix (plain_mix): 80 % the one-statement durable insert of
-- bench/plain_insert.sql, 20 % a read of the last 50 messages of the
-- session, in one statement and one round trip as mix does: the session
-- row's last_seq (a scalar subquery, evaluated once, so that seq >
-- last_seq - 50 bounds the primary-key scan as mix's after_seq does; a join
-- to the session row can get a plan that scans all of the session's rows
-- in seq order and filters them) and the messages after last_seq - 50.  The
-- setup gives every bench session 50 messages on both sides (bench/setup.sql),
-- so both reads return 50 rows.  Run it durable (synchronous_commit = on).
--   pgbench -n -M prepared -D nsessions=1000 -f bench/plain_mix.sql
\set i random(1, :nsessions)
\set r random(1, 100)
\if :r <= 80
WITH s AS (UPDATE bench_plain_sessions SET last_seq = last_seq + 1
            WHERE session_id = 'bench-' || :i AND user_id = 'user-' || :i
            RETURNING session_id, user_id, agent_id, last_seq)
INSERT INTO bench_plain_messages (session_id, seq, sender_id, recipient_id, kind, content, metadata, inserted_at)
SELECT s.session_id, s.last_seq, s.user_id, s.agent_id, 'text', '{"text": "Hi, I was charged twice for my subscription this month. Could you check invoice 4417 for me?"}', '{}', now() FROM s;
\else
SELECT * FROM bench_plain_messages
 WHERE session_id = 'bench-' || :i
   AND seq > (SELECT last_seq FROM bench_plain_sessions WHERE session_id = 'bench-' || :i) - 50
 ORDER BY seq LIMIT 50;
\endif

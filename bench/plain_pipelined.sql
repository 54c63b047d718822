-- Baseline of append_pipelined (plain_pipelined): the one-statement insert of
-- bench/plain_insert.sql, 5 in flight per client to one session in a pgbench
-- pipeline (run it with 30 clients, durable).  One pgbench transaction = one
-- pipeline = 5 messages.  pgbench 15 sends one Sync, at \endpipeline, so the
-- 5 statements are one implicit transaction: one commit (one WAL flush) for
-- the 5 rows, all or none.
--   pgbench -n -M prepared -c 30 -D nsessions=1000 -f bench/plain_pipelined.sql
\set s random(1, :nsessions)
\startpipeline
WITH s AS (UPDATE bench_plain_sessions SET last_seq = last_seq + 1
            WHERE session_id = 'bench-' || :s AND user_id = 'user-' || :s
            RETURNING session_id, user_id, agent_id, last_seq)
INSERT INTO bench_plain_messages (session_id, seq, sender_id, recipient_id, kind, content, metadata, inserted_at)
SELECT s.session_id, s.last_seq, s.user_id, s.agent_id, 'text', '{"text": "Hi, I was charged twice for my subscription this month. Could you check invoice 4417 for me?"}', '{}', now() FROM s;
WITH s AS (UPDATE bench_plain_sessions SET last_seq = last_seq + 1
            WHERE session_id = 'bench-' || :s AND user_id = 'user-' || :s
            RETURNING session_id, user_id, agent_id, last_seq)
INSERT INTO bench_plain_messages (session_id, seq, sender_id, recipient_id, kind, content, metadata, inserted_at)
SELECT s.session_id, s.last_seq, s.user_id, s.agent_id, 'text', '{"text": "Hi, I was charged twice for my subscription this month. Could you check invoice 4417 for me?"}', '{}', now() FROM s;
WITH s AS (UPDATE bench_plain_sessions SET last_seq = last_seq + 1
            WHERE session_id = 'bench-' || :s AND user_id = 'user-' || :s
            RETURNING session_id, user_id, agent_id, last_seq)
INSERT INTO bench_plain_messages (session_id, seq, sender_id, recipient_id, kind, content, metadata, inserted_at)
SELECT s.session_id, s.last_seq, s.user_id, s.agent_id, 'text', '{"text": "Hi, I was charged twice for my subscription this month. Could you check invoice 4417 for me?"}', '{}', now() FROM s;
WITH s AS (UPDATE bench_plain_sessions SET last_seq = last_seq + 1
            WHERE session_id = 'bench-' || :s AND user_id = 'user-' || :s
            RETURNING session_id, user_id, agent_id, last_seq)
INSERT INTO bench_plain_messages (session_id, seq, sender_id, recipient_id, kind, content, metadata, inserted_at)
SELECT s.session_id, s.last_seq, s.user_id, s.agent_id, 'text', '{"text": "Hi, I was charged twice for my subscription this month. Could you check invoice 4417 for me?"}', '{}', now() FROM s;
WITH s AS (UPDATE bench_plain_sessions SET last_seq = last_seq + 1
            WHERE session_id = 'bench-' || :s AND user_id = 'user-' || :s
            RETURNING session_id, user_id, agent_id, last_seq)
INSERT INTO bench_plain_messages (session_id, seq, sender_id, recipient_id, kind, content, metadata, inserted_at)
SELECT s.session_id, s.last_seq, s.user_id, s.agent_id, 'text', '{"text": "Hi, I was charged twice for my subscription this month. Could you check invoice 4417 for me?"}', '{}', now() FROM s;
\endpipeline

-- Baseline of append_batch5 (plain_batch5): the 5 messages inserted by one
-- statement, with consecutive seqs from one UPDATE ... RETURNING last_seq
-- (last_seq + 5: the rows get last_seq - 4 .. last_seq).  One round trip,
-- one transaction, durable.  One pgbench transaction = 5 messages.
--   pgbench -n -M prepared -c 30 -D nsessions=1000 -f bench/plain_batch5.sql
\set s random(1, :nsessions)
WITH s AS (UPDATE bench_plain_sessions SET last_seq = last_seq + 5
            WHERE session_id = 'bench-' || :s AND user_id = 'user-' || :s
            RETURNING session_id, user_id, agent_id, last_seq)
INSERT INTO bench_plain_messages (session_id, seq, sender_id, recipient_id, kind, content, metadata, inserted_at)
SELECT s.session_id, s.last_seq - 5 + m.n, s.user_id, s.agent_id, 'text', m.content, '{}', now()
  FROM s CROSS JOIN (VALUES (1, '{"text": "Hi, I was charged twice for my subscription this month. Could you check invoice 4417 for me?"}'::jsonb),
                            (2, '{"text": "Hi, I was charged twice for my subscription this month. Could you check invoice 4417 for me?"}'::jsonb),
                            (3, '{"text": "Hi, I was charged twice for my subscription this month. Could you check invoice 4417 for me?"}'::jsonb),
                            (4, '{"text": "Hi, I was charged twice for my subscription this month. Could you check invoice 4417 for me?"}'::jsonb),
                            (5, '{"text": "Hi, I was charged twice for my subscription this month. Could you check invoice 4417 for me?"}'::jsonb)) AS m (n, content);

-- bench/setup.sql: objects the workloads need, run by bench/run with
--   psql -v nsessions=N -v nhistory=H -v ncold=M -v nidle=K -v nmany=L -f bench/setup.sql
-- in the database named by fleetlm.database, after CREATE EXTENSION fleetlm.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;

-- fleetlm sessions bench-1 .. bench-N (user-<i>, agent-<i>) for the append
-- workloads, created (committed) before anything appends to them.
SELECT count(fleetlm.create_session('user-' || g, 'agent-' || g, '{}', 'bench-' || g)) AS created_bench_sessions
  FROM generate_series(1, :nsessions) g
 WHERE NOT EXISTS (SELECT 1 FROM fleetlm.sessions s WHERE s.session_id = 'bench-' || g);

-- many-1 .. many-K (K = nmany: 0, or 100,000 when append_100k runs) for
-- append_100k: the same appends spread over far more sessions than
-- fleetlm's shared session table holds.
SELECT count(fleetlm.create_session('user-m' || g, 'agent-m' || g, '{}', 'many-' || g)) AS created_many_sessions
  FROM generate_series(1, :nmany) g
 WHERE NOT EXISTS (SELECT 1 FROM fleetlm.sessions s WHERE s.session_id = 'many-' || g);

-- The plain-insert baselines (bench/plain_*.sql): a session row that holds
-- the last seq next to fleetlm.sessions' own columns, and a message table
-- with fleetlm.messages' columns, defaults, primary key (session_id, seq)
-- and partial index on (session_id, idempotency_key) WHERE idempotency_key
-- IS NOT NULL (LIKE ... INCLUDING ALL), so neither side carries less.
-- Sessions bench-1 .. bench-N, user-<i>, agent-<i>, as for fleetlm.
-- Autovacuum is on (the server default) for these tables and fleetlm's.
CREATE TABLE IF NOT EXISTS bench_plain_sessions (
    LIKE fleetlm.sessions INCLUDING ALL,
    last_seq bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS bench_plain_messages (
    LIKE fleetlm.messages INCLUDING ALL
);
INSERT INTO bench_plain_sessions (session_id, user_id, agent_id)
SELECT 'bench-' || g, 'user-' || g, 'agent-' || g FROM generate_series(1, :nsessions) g
ON CONFLICT (session_id) DO NOTHING;

-- A history of H messages (nhistory: 50) in every bench session, the same
-- on both sides, so that the reads of mix and plain_mix (the last 50
-- messages) return 50 rows each from the start: alternately from the user
-- and from the agent (the recipient the other one), append_small's 104-byte
-- content, metadata '{}'.  fleetlm's are bulk-appended without waiting for
-- the fsync (flushed into fleetlm.messages below, with the cold sessions);
-- the plain side inserts the rows with seqs 1..H and sets last_seq = H.
SET fleetlm.synchronous_append = off;
WITH todo AS MATERIALIZED (
    SELECT g FROM generate_series(1, :nsessions) g WHERE fleetlm.last_seq('bench-' || g) = 0)
SELECT count(fleetlm.append('bench-' || g,
                            CASE WHEN n % 2 = 1 THEN 'user-' ELSE 'agent-' END || g,
                            'text',
                            '{"text": "Hi, I was charged twice for my subscription this month. Could you check invoice 4417 for me?"}'))
       AS bench_history_messages
  FROM todo CROSS JOIN generate_series(1, :nhistory) n;
RESET fleetlm.synchronous_append;
WITH todo AS (
    UPDATE bench_plain_sessions SET last_seq = :nhistory WHERE last_seq = 0
    RETURNING session_id, user_id, agent_id),
ins AS (
    INSERT INTO bench_plain_messages (session_id, seq, sender_id, recipient_id, kind, content, metadata, inserted_at)
    SELECT t.session_id, n,
           CASE WHEN n % 2 = 1 THEN t.user_id ELSE t.agent_id END,
           CASE WHEN n % 2 = 1 THEN t.agent_id ELSE t.user_id END,
           'text', '{"text": "Hi, I was charged twice for my subscription this month. Could you check invoice 4417 for me?"}', '{}', now()
      FROM todo t CROSS JOIN generate_series(1, :nhistory) n
     ORDER BY t.session_id, n
    RETURNING 1)
SELECT count(*) AS plain_history_messages FROM ins;

-- cold-1 .. cold-M with 1,000 messages each (alternating user and agent,
-- ~100 bytes of content), bulk-appended without waiting for the fsync and
-- then flushed into fleetlm.messages.
SELECT count(fleetlm.create_session('user-c' || g, 'agent-c' || g, '{}', 'cold-' || g)) AS created_cold_sessions
  FROM generate_series(1, :ncold) g
 WHERE NOT EXISTS (SELECT 1 FROM fleetlm.sessions s WHERE s.session_id = 'cold-' || g);
SET fleetlm.synchronous_append = off;
WITH todo AS MATERIALIZED (
    SELECT g FROM generate_series(1, :ncold) g WHERE fleetlm.last_seq('cold-' || g) = 0)
SELECT count(fleetlm.append('cold-' || g,
                            CASE WHEN n % 2 = 1 THEN 'user-c' ELSE 'agent-c' END || g,
                            'text',
                            jsonb_build_object('text', 'Message ' || n || ' of a long conversation that a client replays from the start.')))
       AS cold_messages
  FROM todo CROSS JOIN generate_series(1, 1000) n;
-- idle-1 .. idle-K (K = nidle: 0, or N with bench/run --idle-waiters N),
-- one message each: the sessions the idle long-pollers wait on.  Nothing
-- appends to them during the run.
SELECT count(fleetlm.create_session('user-i' || g, 'agent-i' || g, '{}', 'idle-' || g)) AS created_idle_sessions
  FROM generate_series(1, :nidle) g
 WHERE NOT EXISTS (SELECT 1 FROM fleetlm.sessions s WHERE s.session_id = 'idle-' || g);
WITH todo AS MATERIALIZED (
    SELECT g FROM generate_series(1, :nidle) g WHERE fleetlm.last_seq('idle-' || g) = 0)
SELECT count(fleetlm.append('idle-' || g, 'user-i' || g, 'text', '{"text": "Anyone there?"}'))
       AS idle_messages
  FROM todo;
RESET fleetlm.synchronous_append;
SELECT fleetlm.flush();
-- report this session's inserts to the statistics first: counted after the
-- VACUUM they would add to the n_live_tup it sets, doubling it
SELECT pg_stat_force_next_flush();
VACUUM ANALYZE fleetlm.sessions, fleetlm.messages, bench_plain_sessions, bench_plain_messages;

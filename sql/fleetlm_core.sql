--
-- fleetlm_core: sessions, appends, reads, flush, stats.
--
\set VERBOSITY terse

-- a session with an explicit id, and one with a generated ULID
SELECT fleetlm.create_session('alice', 'helper-bot', session_id => 'core-1');
SELECT fleetlm.create_session('alice', 'helper-bot', '{"topic": "ulid"}') ~ '^[0-9A-HJKMNP-TV-Z]{26}$' AS is_ulid;
SELECT session_id, user_id, agent_id, metadata FROM fleetlm.sessions WHERE session_id = 'core-1';

-- seqs 1, 2, 3 ... per session; recipient is the other party
SELECT fleetlm.append('core-1', 'alice', 'text', '{"text": "hello"}');
SELECT fleetlm.append('core-1', 'helper-bot', 'text', '{"text": "hi alice"}', '{"model": "m1"}');
SELECT fleetlm.append('core-1', 'tool-runner', 'tool_result', '"a bare string is fine"');
SELECT fleetlm.append('core-1', 'alice', 'parts', '[{"type": "text", "text": "two"}, {"type": "image"}]');
SELECT fleetlm.last_seq('core-1');

-- read-your-writes: visible at once, whether applied yet or not
SELECT seq, sender_id, recipient_id, kind, content, metadata
  FROM fleetlm.messages('core-1');
SELECT seq FROM fleetlm.messages('core-1', after_seq => 2);
SELECT seq FROM fleetlm.messages('core-1', 1, 2);
SELECT count(*) FROM fleetlm.messages('core-1', 4);
SELECT count(*) FROM fleetlm.messages('core-1', 1000);

-- after flush() the table holds exactly what messages() returns
SELECT fleetlm.flush();
SELECT seq, sender_id, recipient_id, kind, content, metadata, idempotency_key
  FROM fleetlm.messages WHERE session_id = 'core-1' ORDER BY seq;
SELECT (SELECT array_agg(m ORDER BY seq) FROM fleetlm.messages('core-1') m)
     = (SELECT array_agg(m ORDER BY seq) FROM fleetlm.messages m WHERE session_id = 'core-1') AS same_rows;

-- appends continue from the table once applied; inserted_at is the append time
SELECT fleetlm.append('core-1', 'alice', 'text', '{"text": "after flush"}');
SELECT seq, content FROM fleetlm.messages('core-1', 4);
SELECT bool_and(inserted_at <= now()) AND bool_and(inserted_at > now() - interval '1 hour')
  FROM fleetlm.messages('core-1');

-- an empty session
SELECT fleetlm.create_session('bob', 'helper-bot', session_id => 'core-empty');
SELECT fleetlm.last_seq('core-empty');
SELECT count(*) FROM fleetlm.messages('core-empty');

-- appends are not transactional: a rollback does not take them back
BEGIN;
SELECT fleetlm.append('core-1', 'alice', 'text', '{"text": "rolled back, still durable"}');
ROLLBACK;
SELECT seq, content FROM fleetlm.messages('core-1', 5);

-- a session created in the same transaction cannot take appends yet
BEGIN;
SELECT fleetlm.create_session('carol', 'helper-bot', session_id => 'core-same-xact');
SELECT fleetlm.append('core-same-xact', 'carol', 'text', '{}');
ROLLBACK;

-- reads use a fresh snapshot even inside REPEATABLE READ
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT fleetlm.last_seq('core-1');
SELECT fleetlm.append('core-1', 'helper-bot', 'text', '{"text": "seen inside RR"}');
SELECT max(seq) FROM fleetlm.messages('core-1');
COMMIT;

-- synchronous_append = off returns before the fsync; flush() still waits
SET fleetlm.synchronous_append = off;
SELECT fleetlm.append('core-1', 'alice', 'text', '{"text": "async"}');
RESET fleetlm.synchronous_append;
SELECT fleetlm.flush();
SELECT seq, content FROM fleetlm.messages('core-1', 7);

-- ids are stored verbatim, quotes and all
SELECT fleetlm.create_session('o''brien', 'agent"x', session_id => $$x'); drop table fleetlm.messages; --$$);
SELECT fleetlm.append($$x'); drop table fleetlm.messages; --$$, 'o''brien', 'text', '{"text": "\\ and \""}');
SELECT session_id, sender_id, recipient_id, content
  FROM fleetlm.messages($$x'); drop table fleetlm.messages; --$$);

-- stats
SELECT fleetlm.flush();
SELECT state, inserted_lsn = applied_lsn AS all_applied, durable_lsn = applied_lsn AS all_durable_applied,
       appends >= 9 AS counted_appends, fsyncs > 0 AS fsynced, applier_rows >= 9 AS applied_rows,
       ring_size, ring_used, shmem_size > ring_size AS shmem_reported, wal_directory, writer_error
  FROM fleetlm.stat;

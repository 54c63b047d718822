--
-- fleetlm_errors: every documented error, with its SQLSTATE, and proof
-- that none of them wrote anything.
--

SELECT fleetlm.create_session('erin', 'helper-bot', session_id => 'err-1');
SELECT fleetlm.append('err-1', 'erin', 'text', '{"text": "the only message"}');
CREATE TEMP TABLE before AS
    SELECT appends, append_bytes, inserted_lsn FROM fleetlm.stat;

SELECT t.call, try(t.call) AS result
  FROM (VALUES
    -- append: NULLs
    ($$SELECT fleetlm.append(NULL, 'erin', 'text', '{}')$$),
    ($$SELECT fleetlm.append('err-1', NULL, 'text', '{}')$$),
    ($$SELECT fleetlm.append('err-1', 'erin', NULL, '{}')$$),
    ($$SELECT fleetlm.append('err-1', 'erin', 'text', NULL)$$),
    ($$SELECT fleetlm.append('err-1', 'erin', 'text', '{}', NULL)$$),
    -- append: empty or oversized strings
    ($$SELECT fleetlm.append('', 'erin', 'text', '{}')$$),
    ($$SELECT fleetlm.append('err-1', '', 'text', '{}')$$),
    ($$SELECT fleetlm.append('err-1', 'erin', '', '{}')$$),
    ($$SELECT fleetlm.append(repeat('s', 65), 'erin', 'text', '{}')$$),
    ($$SELECT fleetlm.append('err-1', repeat('e', 65), 'text', '{}')$$),
    ($$SELECT fleetlm.append('err-1', 'erin', repeat('k', 65), '{}')$$),
    -- append: metadata must be an object; size limit
    ($$SELECT fleetlm.append('err-1', 'erin', 'text', '{}', '[1, 2]')$$),
    ($$SELECT fleetlm.append('err-1', 'erin', 'text', '{}', '"meta"')$$),
    ($$SELECT fleetlm.append('err-1', 'erin', 'text', jsonb_build_object('text', repeat('x', 300000)))$$),
    -- append: unknown session
    ($$SELECT fleetlm.append('no-such-session', 'erin', 'text', '{}')$$),
    -- messages
    ($$SELECT * FROM fleetlm.messages(NULL)$$),
    ($$SELECT * FROM fleetlm.messages('err-1', NULL)$$),
    ($$SELECT * FROM fleetlm.messages('err-1', 0, NULL)$$),
    ($$SELECT * FROM fleetlm.messages('err-1', -1)$$),
    ($$SELECT * FROM fleetlm.messages('err-1', 0, 0)$$),
    ($$SELECT * FROM fleetlm.messages('err-1', 0, -5)$$),
    ($$SELECT * FROM fleetlm.messages('err-1', 0, 100001)$$),
    ($$SELECT * FROM fleetlm.messages('no-such-session')$$),
    ($$SELECT * FROM fleetlm.messages(repeat('s', 65))$$),
    -- last_seq
    ($$SELECT fleetlm.last_seq(NULL)$$),
    ($$SELECT fleetlm.last_seq('no-such-session')$$),
    ($$SELECT fleetlm.last_seq('')$$),
    -- create_session
    ($$SELECT fleetlm.create_session(NULL, 'a')$$),
    ($$SELECT fleetlm.create_session('u', NULL)$$),
    ($$SELECT fleetlm.create_session('u', 'a', NULL)$$),
    ($$SELECT fleetlm.create_session('', 'a')$$),
    ($$SELECT fleetlm.create_session('u', '')$$),
    ($$SELECT fleetlm.create_session(repeat('u', 65), 'a')$$),
    ($$SELECT fleetlm.create_session('u', 'a', '[]')$$),
    ($$SELECT fleetlm.create_session('u', 'a', '{}', '')$$),
    ($$SELECT fleetlm.create_session('u', 'a', '{}', repeat('s', 65))$$),
    ($$SELECT fleetlm.create_session('u', 'a', '{}', 'err-1')$$),
    -- append: idempotency keys
    ($$SELECT fleetlm.append('err-1', 'erin', 'text', '{}', '{}', '')$$),
    ($$SELECT fleetlm.append('err-1', 'erin', 'text', '{}', '{}', repeat('k', 129))$$),
    -- append_batch
    ($$SELECT fleetlm.append_batch(NULL, 'erin', '[]')$$),
    ($$SELECT fleetlm.append_batch('err-1', NULL, '[]')$$),
    ($$SELECT fleetlm.append_batch('err-1', 'erin', NULL)$$),
    ($$SELECT fleetlm.append_batch('err-1', 'erin', '{"kind": "text"}')$$),
    ($$SELECT fleetlm.append_batch('err-1', 'erin', '"text"')$$),
    ($$SELECT fleetlm.append_batch('err-1', 'erin', '[]')$$),
    ($$SELECT fleetlm.append_batch('err-1', 'erin', '[{"kind": "text", "content": 1}, 2]')$$),
    ($$SELECT fleetlm.append_batch('err-1', 'erin', '[{"content": 1}]')$$),
    ($$SELECT fleetlm.append_batch('err-1', 'erin', '[{"kind": 7, "content": 1}]')$$),
    ($$SELECT fleetlm.append_batch('err-1', 'erin', '[{"kind": "text"}]')$$),
    ($$SELECT fleetlm.append_batch('err-1', 'erin', '[{"kind": "text", "content": 1, "extra": 2}]')$$),
    ($$SELECT fleetlm.append_batch('err-1', 'erin', '[{"kind": "", "content": 1}]')$$),
    ($$SELECT fleetlm.append_batch('err-1', 'erin', '[{"kind": "text", "content": 1, "metadata": [1]}]')$$),
    ($$SELECT fleetlm.append_batch('err-1', 'erin', (SELECT jsonb_agg(jsonb_build_object('kind', 'text', 'content', i)) FROM generate_series(1, 1001) i))$$),
    ($$SELECT fleetlm.append_batch('err-1', 'erin', (SELECT jsonb_agg(jsonb_build_object('kind', 'text', 'content', repeat('x', 100000))) FROM generate_series(1, 3) i))$$),
    ($$SELECT fleetlm.append_batch('no-such-session', 'erin', '[{"kind": "text", "content": 1}]')$$),
    -- delete_session
    ($$SELECT fleetlm.delete_session(NULL)$$),
    ($$SELECT fleetlm.delete_session('no-such-session')$$),
    ($$SELECT fleetlm.delete_session('')$$),
    -- get_session, list_sessions
    ($$SELECT fleetlm.get_session(NULL)$$),
    ($$SELECT fleetlm.get_session('no-such-session')$$),
    ($$SELECT * FROM fleetlm.list_sessions(NULL)$$),
    ($$SELECT * FROM fleetlm.list_sessions('erin', NULL)$$),
    ($$SELECT * FROM fleetlm.list_sessions('erin', 0)$$),
    ($$SELECT * FROM fleetlm.list_sessions('erin', 1000000)$$),
    ($$SELECT * FROM fleetlm.list_sessions('erin', 10, 'no-such-session')$$),
    ($$SELECT * FROM fleetlm.list_sessions('', 10)$$),
    -- mark_read
    ($$SELECT fleetlm.mark_read(NULL, 'erin', 1)$$),
    ($$SELECT fleetlm.mark_read('err-1', NULL, 1)$$),
    ($$SELECT fleetlm.mark_read('err-1', 'erin', NULL)$$),
    ($$SELECT fleetlm.mark_read('err-1', 'erin', -1)$$),
    ($$SELECT fleetlm.mark_read('err-1', 'erin', 2)$$),
    ($$SELECT fleetlm.mark_read('err-1', 'erin', 9223372036854775807)$$),
    ($$SELECT fleetlm.mark_read('err-1', '', 1)$$),
    ($$SELECT fleetlm.mark_read('no-such-session', 'erin', 0)$$),
    -- inbox
    ($$SELECT * FROM fleetlm.inbox(NULL)$$),
    ($$SELECT * FROM fleetlm.inbox('erin', NULL)$$),
    ($$SELECT * FROM fleetlm.inbox('erin', -1)$$),
    -- wait_for_messages
    ($$SELECT * FROM fleetlm.wait_for_messages(NULL, 0)$$),
    ($$SELECT * FROM fleetlm.wait_for_messages('err-1', NULL)$$),
    ($$SELECT * FROM fleetlm.wait_for_messages('err-1', -1)$$),
    ($$SELECT * FROM fleetlm.wait_for_messages('err-1', 0, NULL)$$),
    ($$SELECT * FROM fleetlm.wait_for_messages('err-1', 0, '-1 second')$$),
    ($$SELECT * FROM fleetlm.wait_for_messages('err-1', 0, '2 days')$$),
    ($$SELECT * FROM fleetlm.wait_for_messages('err-1', 0, '1 mon')$$),
    ($$SELECT * FROM fleetlm.wait_for_messages('err-1', 0, '178000000 years')$$),
    ($$SELECT * FROM fleetlm.wait_for_messages('err-1', 0, '-178000000 years')$$),
    ($$SELECT * FROM fleetlm.wait_for_messages('err-1', 0, '1 day 00:00:00.000001')$$),
    ($$SELECT * FROM fleetlm.wait_for_messages('err-1', 0, '1s', 0)$$),
    ($$SELECT * FROM fleetlm.wait_for_messages('err-1', 0, '1s', NULL)$$),
    ($$SELECT * FROM fleetlm.wait_for_messages('no-such-session', 0, '1s')$$),
    -- wait_for_stream
    ($$SELECT * FROM fleetlm.wait_for_stream(NULL, 1)$$),
    ($$SELECT * FROM fleetlm.wait_for_stream('err-1', NULL)$$),
    ($$SELECT * FROM fleetlm.wait_for_stream('err-1', 1, NULL)$$),
    ($$SELECT * FROM fleetlm.wait_for_stream('err-1', 1, 0, NULL)$$),
    ($$SELECT * FROM fleetlm.wait_for_stream('', 1)$$),
    ($$SELECT * FROM fleetlm.wait_for_stream(repeat('s', 65), 1)$$),
    ($$SELECT * FROM fleetlm.wait_for_stream('err-1', 0)$$),
    ($$SELECT * FROM fleetlm.wait_for_stream('err-1', -3)$$),
    ($$SELECT * FROM fleetlm.wait_for_stream('err-1', 1, -1)$$),
    ($$SELECT * FROM fleetlm.wait_for_stream('err-1', 1, 0, '-1 second')$$),
    ($$SELECT * FROM fleetlm.wait_for_stream('err-1', 1, 0, '2 days')$$),
    ($$SELECT * FROM fleetlm.wait_for_stream('no-such-session', 1, 0, '0')$$)
  ) AS t(call);

-- deleted sessions refuse everything
SELECT fleetlm.create_session('erin', 'helper-bot', session_id => 'err-deleted');
SELECT fleetlm.delete_session('err-deleted');
UPDATE before SET inserted_lsn = (SELECT inserted_lsn FROM fleetlm.stat),
                  append_bytes = (SELECT append_bytes FROM fleetlm.stat);
-- (the message says "has been deleted" or, once the applier has removed
-- the session, "does not exist": the SQLSTATE is the same)
SELECT t.call, left(try(t.call), 5) AS sqlstate
  FROM (VALUES
    ($$SELECT fleetlm.append('err-deleted', 'erin', 'text', '{}')$$),
    ($$SELECT fleetlm.append_batch('err-deleted', 'erin', '[{"kind": "text", "content": 1}]')$$),
    ($$SELECT * FROM fleetlm.messages('err-deleted')$$),
    ($$SELECT fleetlm.last_seq('err-deleted')$$),
    ($$SELECT fleetlm.get_session('err-deleted')$$),
    ($$SELECT fleetlm.mark_read('err-deleted', 'erin', 0)$$),
    ($$SELECT fleetlm.delete_session('err-deleted')$$),
    ($$SELECT * FROM fleetlm.wait_for_messages('err-deleted', 0, '1s')$$)
  ) AS t(call);

-- nothing was written: no append counted, no byte inserted, seq unchanged
SELECT s.appends = b.appends AS no_appends, s.append_bytes = b.append_bytes AS no_bytes,
       s.inserted_lsn = b.inserted_lsn AS no_records
  FROM fleetlm.stat s, before b;
SELECT fleetlm.last_seq('err-1');
SELECT count(*) FROM fleetlm.sessions WHERE user_id IN ('u', '') OR user_id LIKE 'uuu%';
-- and the next append gets the next seq
SELECT fleetlm.append('err-1', 'erin', 'text', '{"text": "second"}');

-- limits at their edge are accepted
SELECT fleetlm.create_session(repeat('u', 64), repeat('a', 64), session_id => repeat('s', 64)) = repeat('s', 64);
SELECT fleetlm.append(repeat('s', 64), repeat('e', 64), repeat('k', 64), '{}');
SELECT count(*) FROM fleetlm.messages('err-1', 0, 100000);
-- the largest after_seq reads nothing, without overflowing after_seq + max_count
SELECT count(*) FROM fleetlm.messages('err-1', 9223372036854775807, 100000);
SELECT count(*) FROM fleetlm.wait_for_messages('err-1', 9223372036854775807, '0s', 100000);
SELECT count(*) FROM fleetlm.messages('err-1', 9223372036854775806, 100000);

-- reads of the tables (src/tables.c, no SPI) check the tables' shape and
-- notice a change of it in the same backend.  A session created and never
-- appended to has no entry in the session table: it is read from the tables.
SELECT fleetlm.create_session('erin', 'helper-bot', session_id => 'err-cold');
SELECT fleetlm.last_seq('err-cold');
SELECT count(*) FROM fleetlm.messages('err-cold');
BEGIN;
ALTER TABLE fleetlm.messages RENAME COLUMN kind TO kind_renamed;
SELECT count(*) FROM fleetlm.messages('err-cold');
ROLLBACK;
BEGIN;
ALTER TABLE fleetlm.sessions RENAME COLUMN agent_id TO agent;
SELECT fleetlm.last_seq('err-cold');
ROLLBACK;
BEGIN;
ALTER TABLE fleetlm.messages DROP CONSTRAINT messages_pkey;
SELECT fleetlm.last_seq('err-cold');
ROLLBACK;
-- after the rollbacks the same backend reads the tables again
SELECT fleetlm.last_seq('err-cold');
SELECT count(*) FROM fleetlm.messages('err-cold');
-- a session created in the current transaction is read, empty; appends wait
-- for its commit
BEGIN;
SELECT fleetlm.create_session('erin', 'helper-bot', session_id => 'err-same-xact');
SELECT fleetlm.last_seq('err-same-xact'), (SELECT count(*) FROM fleetlm.messages('err-same-xact'));
SELECT fleetlm.append('err-same-xact', 'erin', 'text', '{}');
ROLLBACK;
SELECT fleetlm.create_session('erin', 'helper-bot', session_id => 'err-same-xact');
SELECT fleetlm.append('err-same-xact', 'erin', 'text', '{}');
SELECT seq, kind FROM fleetlm.messages('err-same-xact');

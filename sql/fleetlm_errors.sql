--
-- fleetlm_errors: every documented error, with its SQLSTATE, and proof
-- that none of them wrote anything.
--
CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

SELECT fleetlm.create_session('erin', 'helper-bot', session_id => 'err-1');
SELECT fleetlm.append('err-1', 'erin', 'text', '{"text": "the only message"}');
CREATE TEMP TABLE before AS
    SELECT appends, append_bytes, inserted_lsn FROM fleetlm.stat;

SELECT t.call, pg_temp.try(t.call) AS result
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
    ($$SELECT fleetlm.create_session('u', 'a', '{}', 'err-1')$$)
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

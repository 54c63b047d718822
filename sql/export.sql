--
-- export: export_session / import_session (moving a session to another
-- server, here deleted and imported again on the same one) and
-- append_many (appends to many sessions sharing one durability wait).
--
\set VERBOSITY terse

SELECT fleetlm.create_session('eve', 'bot-e', '{"topic": "move"}', 'exp-1');
SELECT fleetlm.append('exp-1', 'eve', 'text', '{"text": "one"}', '{"m": 1}', 'key-1');
SELECT fleetlm.append('exp-1', 'bot-e', 'text', '{"text": "two"}');
SELECT fleetlm.append('exp-1', 'tool', 'tool_result', '"three"', idempotency_key => 'key-3');
SELECT fleetlm.mark_read('exp-1', 'eve', 2);
SELECT fleetlm.mark_read('exp-1', 'bot-e', 3);
-- not yet applied when exported: export flushes first (and reads messages())
SELECT fleetlm.append('exp-1', 'eve', 'text', '{"text": "four"}', idempotency_key => 'key-4');

CREATE TEMP TABLE doc AS SELECT fleetlm.export_session('exp-1') AS d;
SELECT d->>'format' AS format, (d->'session') - 'created_at' AS session,
       jsonb_array_length(d->'messages') AS messages,
       jsonb_path_query_array(d->'cursors', '$[*].participant_id') AS cursor_participants
  FROM doc;
SELECT m->>'seq' AS seq, m->>'sender_id' AS sender, m->>'recipient_id' AS recipient,
       m->>'kind' AS kind, m->'content' AS content, m->'metadata' AS metadata,
       m->>'idempotency_key' AS key, m ? 'session_id' AS has_session_id
  FROM doc, jsonb_array_elements(d->'messages') m;

-- keep what the session looks like, then move it: delete, import
CREATE TEMP TABLE before_msgs AS SELECT * FROM fleetlm.messages('exp-1');
CREATE TEMP TABLE before_session AS SELECT * FROM fleetlm.get_session('exp-1');
CREATE TEMP TABLE before_cursors AS
    SELECT participant_id, last_read_seq, updated_at FROM fleetlm.cursors WHERE session_id = 'exp-1';
CREATE TEMP TABLE before_inbox AS SELECT * FROM fleetlm.inbox('eve');

-- it exists here: refused, nothing written
SELECT try($$SELECT fleetlm.import_session((SELECT d FROM doc))$$);
SELECT count(*) FROM fleetlm.messages WHERE session_id = 'exp-1';

SELECT fleetlm.delete_session('exp-1');
-- a deleted session cannot be exported: it does not come back
SELECT try($$SELECT fleetlm.export_session('exp-1')$$);
SELECT try($$SELECT fleetlm.export_session('exp-1', false)$$);
SELECT fleetlm.import_session(d) FROM doc;

SELECT (SELECT jsonb_agg(m ORDER BY seq) FROM fleetlm.messages('exp-1') m)
     = (SELECT jsonb_agg(m ORDER BY seq) FROM before_msgs m) AS same_messages;
SELECT (SELECT to_jsonb(s) FROM fleetlm.get_session('exp-1') s)
     = (SELECT to_jsonb(s) FROM before_session s) AS same_session;
SELECT (SELECT jsonb_agg(c ORDER BY participant_id) FROM
            (SELECT participant_id, last_read_seq, updated_at FROM fleetlm.cursors
              WHERE session_id = 'exp-1') c)
     = (SELECT jsonb_agg(c ORDER BY participant_id) FROM before_cursors c) AS same_cursors;
SELECT (SELECT jsonb_agg(i ORDER BY session_id) FROM fleetlm.inbox('eve') i)
     = (SELECT jsonb_agg(i ORDER BY session_id) FROM before_inbox i) AS same_inbox;
-- seqs go on; keys are kept, in the table and in the ring
SELECT fleetlm.append('exp-1', 'eve', 'text', '{"text": "five"}');
SELECT fleetlm.append('exp-1', 'eve', 'text', '{"text": "one, again"}', idempotency_key => 'key-1');
SELECT fleetlm.append('exp-1', 'eve', 'text', '{"text": "four, again"}', idempotency_key => 'key-4');
SELECT fleetlm.mark_read('exp-1', 'eve', 1);
SELECT seq, content FROM fleetlm.messages('exp-1', 3);
-- the export of the imported session is the document, plus what came since
SELECT fleetlm.flush();
SELECT (fleetlm.export_session('exp-1') #- '{messages,4}' #- '{cursors,1,updated_at}')
     = (SELECT d #- '{cursors,1,updated_at}' FROM doc) AS export_round_trip;
SELECT fleetlm.mark_read('exp-1', 'eve', 5);

-- an empty session, with no message and no cursor
SELECT fleetlm.create_session('eve', 'bot-e', session_id => 'exp-empty');
SELECT fleetlm.export_session('exp-empty') - 'session';
SELECT fleetlm.delete_session('exp-empty');
SELECT fleetlm.import_session(fleetlm.export_session('exp-1') #- '{messages}'
    || '{"messages": [], "cursors": []}' || jsonb_build_object('session',
       jsonb_build_object('session_id', 'exp-empty', 'user_id', 'eve', 'agent_id', 'bot-e',
                          'metadata', '{}'::jsonb, 'created_at', '2026-01-01T00:00:00Z')));
SELECT session_id, last_seq, created_at = '2026-01-01T00:00:00Z' AS created_kept
  FROM fleetlm.get_session('exp-empty');
SELECT fleetlm.append('exp-empty', 'eve', 'text', '{}');

-- a session with an agent turn pending is refused
INSERT INTO fleetlm.pending_turns VALUES ('exp-empty', 1);
SELECT try($$SELECT fleetlm.export_session('exp-empty')$$);
DELETE FROM fleetlm.pending_turns WHERE session_id = 'exp-empty';

-- bad calls: each an error naming the bad value, and nothing written
CREATE TEMP TABLE bad (n int, doc jsonb);
INSERT INTO bad
SELECT n, CASE n
    WHEN 1 THEN NULL
    WHEN 2 THEN '[]'
    WHEN 3 THEN d || '{"format": "other.v9"}'
    WHEN 4 THEN d - 'format'
    WHEN 5 THEN d - 'messages'
    WHEN 6 THEN d || '{"cursors": {}}'
    WHEN 7 THEN jsonb_set(d, '{session,session_id}', 'null')
    WHEN 8 THEN jsonb_set(d, '{session,session_id}', '"exp-new"') #- '{session,created_at}'
    WHEN 9 THEN jsonb_set(d, '{session,session_id}', '"exp-new"') #- '{messages,1}'
    WHEN 10 THEN jsonb_set(jsonb_set(d, '{session,session_id}', '"exp-new"'), '{messages,0,seq}', '0')
    WHEN 11 THEN jsonb_set(jsonb_set(d, '{session,session_id}', '"exp-new"'), '{messages,2,seq}', '"x"')
    WHEN 12 THEN jsonb_set(jsonb_set(d, '{session,session_id}', '"exp-new"'), '{messages,1,session_id}', '"exp-other"')
    WHEN 13 THEN jsonb_set(jsonb_set(d, '{session,session_id}', '"exp-new"'), '{messages,1,kind}', '""')
    WHEN 14 THEN jsonb_set(jsonb_set(d, '{session,session_id}', '"exp-new"'), '{messages,1}', (d->'messages'->1) - 'content')
    WHEN 15 THEN jsonb_set(jsonb_set(d, '{session,session_id}', '"exp-new"'), '{messages,1,metadata}', '[1]')
    WHEN 16 THEN jsonb_set(jsonb_set(d, '{session,session_id}', '"exp-new"'), '{messages,1,idempotency_key}', '"key-1"')
    WHEN 17 THEN jsonb_set(jsonb_set(d, '{session,session_id}', '"exp-new"'), '{cursors,0,last_read_seq}', '5')
    WHEN 18 THEN jsonb_set(jsonb_set(d, '{session,session_id}', '"exp-new"'), '{cursors,0,last_read_seq}', '-1')
    WHEN 19 THEN jsonb_set(jsonb_set(d, '{session,session_id}', '"exp-new"'), '{cursors,1,participant_id}', '"bot-e"')
    WHEN 20 THEN jsonb_set(jsonb_set(d, '{session,session_id}', '"exp-new"'), '{session,metadata}', '"m"')
    WHEN 21 THEN jsonb_set(jsonb_set(d, '{session,session_id}', '"exp-new"'), '{session,user_id}', '""')
    WHEN 22 THEN jsonb_set(jsonb_set(d, '{session,session_id}', '"exp-new"'), '{session,agent_id}', 'null')
    WHEN 23 THEN jsonb_set(d, '{session,session_id}', to_jsonb(repeat('x', 65)))
    WHEN 24 THEN jsonb_set(jsonb_set(d, '{session,session_id}', '"exp-new"'), '{messages,0,inserted_at}', '"yesterday-ish"')
    END
  FROM doc, generate_series(1, 24) n;
SELECT n, try(format('SELECT fleetlm.import_session(%L)', doc)) FROM bad ORDER BY n;
SELECT try($$SELECT fleetlm.export_session(NULL)$$);
SELECT try($$SELECT fleetlm.export_session('exp-1', NULL)$$);
SELECT try($$SELECT fleetlm.export_session('nope')$$);
SELECT try($$SELECT fleetlm.export_session('')$$);
SELECT count(*) FROM fleetlm.sessions WHERE session_id IN ('exp-new', 'exp-other');
SELECT fleetlm.flush();
SELECT count(*) FROM fleetlm.messages WHERE session_id IN ('exp-new', 'exp-other');

-- append_many: many sessions, many senders, in order; keys kept
SELECT fleetlm.create_session('mo', 'bot-m', session_id => 'many-' || i) FROM generate_series(1, 3) i;
SELECT * FROM fleetlm.append_many(
    ARRAY['many-1', 'many-2', 'many-1', 'many-3', 'many-1'],
    ARRAY['mo', 'mo', 'bot-m', 'mo', 'tool'],
    ARRAY['text', 'text', 'text', 'text', 'tool_result'],
    ARRAY['{"n": 1}', '{"n": 2}', '{"n": 3}', '{"n": 4}', '"five"']::jsonb[],
    ARRAY['{"a": 1}', NULL, '{}', '{}', '{}']::jsonb[],
    ARRAY['mk-1', NULL, NULL, 'mk-4', NULL]);
SELECT session_id, seq, sender_id, recipient_id, kind, content, metadata, idempotency_key
  FROM fleetlm.messages('many-1') UNION ALL
SELECT session_id, seq, sender_id, recipient_id, kind, content, metadata, idempotency_key
  FROM fleetlm.messages('many-3') ORDER BY 1, 2;
-- a retry with the same keys gives the same seqs
SELECT * FROM fleetlm.append_many(ARRAY['many-3', 'many-1'], ARRAY['mo', 'mo'],
    ARRAY['text', 'text'], ARRAY['{"n": 4}', '{"n": 1}']::jsonb[], NULL, ARRAY['mk-4', 'mk-1']);
SELECT count(*) FROM fleetlm.append_many('{}', '{}', '{}', '{}');
SELECT try($$SELECT fleetlm.append_many(NULL, '{}', '{}', '{}')$$);
SELECT try($$SELECT fleetlm.append_many('{many-1}', '{mo}', '{text}', NULL)$$);
SELECT try($$SELECT fleetlm.append_many('{many-1,many-2}', '{mo}', '{text}', '{"{}"}')$$);
SELECT try($$SELECT fleetlm.append_many('{many-1}', '{mo}', '{text}', '{"{}"}', '{"{}","{}"}')$$);
SELECT try($$SELECT fleetlm.append_many('{many-1}', '{mo}', '{text}', '{"{}"}', NULL, '{a,b}')$$);
-- not atomic: many-1 gets its message (seq 4) before 'nope' fails
SELECT try($$SELECT fleetlm.append_many('{many-1,nope}', '{mo,mo}', '{text,text}', '{"{}","{}"}')$$);
SHOW fleetlm.synchronous_append;
-- (made without waiting, it is durable once the writer gets to it)
SELECT fleetlm.flush();
SELECT fleetlm.last_seq('many-1');

-- privileges: fleetlm_admin moves sessions, writers may append_many
CREATE ROLE regress_export_writer IN ROLE fleetlm_writer;
CREATE ROLE regress_export_admin IN ROLE fleetlm_admin;
SET ROLE regress_export_writer;
SELECT try($$SELECT fleetlm.export_session('exp-1')$$);
SELECT try($$SELECT fleetlm.import_session('{}')$$);
SELECT * FROM fleetlm.append_many('{many-2}', '{mo}', '{text}', '{"{}"}');
RESET ROLE;
SET ROLE regress_export_admin;
SELECT jsonb_array_length(fleetlm.export_session('exp-1')->'messages');
SELECT try($$SELECT fleetlm.append_many('{many-2}', '{mo}', '{text}', '{"{}"}')$$);
RESET ROLE;
DROP ROLE regress_export_writer, regress_export_admin;

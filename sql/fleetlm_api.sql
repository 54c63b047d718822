--
-- fleetlm_api: the conversation API: sessions, inbox, cursors, long-poll,
-- deletion, idempotent and batched appends.
--
\set VERBOSITY terse

SELECT fleetlm.create_session('pat', 'bot-a', '{"title": "first"}', 'api-1');
SELECT fleetlm.create_session('pat', 'bot-b', session_id => 'api-2');
SELECT fleetlm.create_session('pat', 'bot-a', session_id => 'api-3');
SELECT fleetlm.create_session('someone-else', 'bot-a', session_id => 'api-other');

-- get_session, with last_seq from messages not applied yet
SELECT fleetlm.append('api-1', 'pat', 'text', '{"text": "one"}');
SELECT fleetlm.append('api-1', 'bot-a', 'text', '{"text": "two"}');
SELECT session_id, user_id, agent_id, metadata, last_seq FROM fleetlm.get_session('api-1');
SELECT last_seq FROM fleetlm.get_session('api-3');

-- list_sessions: newest first, keyset pagination with before_id
SELECT session_id, agent_id, last_seq FROM fleetlm.list_sessions('pat');
SELECT session_id FROM fleetlm.list_sessions('pat', 2);
SELECT session_id FROM fleetlm.list_sessions('pat', 2, before_id => 'api-2');
SELECT session_id FROM fleetlm.list_sessions('pat', 2, before_id => 'api-1');
SELECT count(*) FROM fleetlm.list_sessions('nobody-at-all');

-- idempotent append: a retry returns the original seq and appends nothing
SELECT fleetlm.append('api-2', 'bot-b', 'text', '{"text": "hello"}', idempotency_key => 'req-1');
SELECT fleetlm.append('api-2', 'bot-b', 'text', '{"text": "hello"}', idempotency_key => 'req-1');
SELECT fleetlm.append('api-2', 'bot-b', 'text', '{"text": "other"}', idempotency_key => 'req-2');
SELECT fleetlm.flush();
SELECT fleetlm.append('api-2', 'bot-b', 'text', '{"text": "hello"}', idempotency_key => 'req-1');
SELECT fleetlm.append('api-2', 'bot-b', 'text', '{"text": "other"}', idempotency_key => 'req-2');
-- the same key in another session is another message
SELECT fleetlm.append('api-3', 'bot-a', 'text', '{"text": "hello"}', idempotency_key => 'req-1');
SELECT seq, content, idempotency_key FROM fleetlm.messages('api-2');

-- append_batch: one write, consecutive seqs
SELECT * FROM fleetlm.append_batch('api-3', 'bot-a', '[
    {"kind": "tool_call", "content": {"name": "search", "args": {"q": "weather"}}},
    {"kind": "tool_result", "content": "sunny", "metadata": {"ms": 12}},
    {"kind": "text", "content": {"text": "It is sunny."}}
]');
SELECT seq, kind, content, metadata, recipient_id FROM fleetlm.messages('api-3');
SELECT fleetlm.flush();
SELECT seq, kind FROM fleetlm.messages WHERE session_id = 'api-3' ORDER BY seq;

-- mark_read: forward only, never past the last seq
SELECT fleetlm.mark_read('api-1', 'pat', 1);
SELECT fleetlm.mark_read('api-1', 'pat', 0);
SELECT fleetlm.mark_read('api-1', 'pat', 2);
SELECT fleetlm.mark_read('api-1', 'bot-a', 2);
SELECT fleetlm.mark_read('api-1', 'pat', 3);
SELECT session_id, participant_id, last_read_seq FROM fleetlm.cursors ORDER BY 1, 2;

-- inbox: most recent activity first, unread counts from the user's cursor
SELECT fleetlm.append('api-1', 'bot-a', 'text', '{"text": "three"}');
SELECT session_id, agent_id, last_seq, last_sender_id, last_read_seq, unread_count
  FROM fleetlm.inbox('pat');
SELECT session_id FROM fleetlm.inbox('pat', 1);
SELECT bool_and(last_message_at IS NOT NULL) FROM fleetlm.inbox('pat');

-- wait_for_messages: returns at once when there is something past after_seq,
-- no rows after the timeout otherwise
SELECT seq, content FROM fleetlm.wait_for_messages('api-1', 1);
SELECT seq FROM fleetlm.wait_for_messages('api-1', 2, max_count => 1);
SELECT count(*) FROM fleetlm.wait_for_messages('api-1', 3, '100 milliseconds');
SELECT count(*) FROM fleetlm.wait_for_messages('api-1', 3, '0');

-- delete_session: gone for every function, and from the tables once applied
SELECT fleetlm.delete_session('api-2');
SELECT session_id FROM fleetlm.list_sessions('pat');
SELECT session_id FROM fleetlm.inbox('pat');
SELECT fleetlm.flush();
SELECT count(*) FROM fleetlm.messages WHERE session_id = 'api-2';
SELECT count(*) FROM fleetlm.sessions WHERE session_id = 'api-2';
-- the id can be used again, and starts over
SELECT fleetlm.create_session('pat', 'bot-c', session_id => 'api-2');
SELECT fleetlm.append('api-2', 'pat', 'text', '{"text": "fresh start"}', idempotency_key => 'req-1');
SELECT seq, content FROM fleetlm.messages('api-2');

-- deleting a session with unapplied messages: they never reach the table
SELECT fleetlm.create_session('pat', 'bot-d', session_id => 'api-4');
SELECT fleetlm.append('api-4', 'pat', 'text', jsonb_build_object('n', i)) FROM generate_series(1, 3) i;
SELECT fleetlm.delete_session('api-4');
SELECT fleetlm.flush();
SELECT count(*) FROM fleetlm.messages WHERE session_id = 'api-4';

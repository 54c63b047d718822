--
-- fleetlm_roles: nothing for PUBLIC; fleetlm_reader reads, fleetlm_writer
-- writes, fleetlm_admin manages agents.  Ids that look like SQL are data.
--
\set VERBOSITY terse
SELECT fleetlm.create_session('rita', 'bot', session_id => 'roles-1');
SELECT fleetlm.append('roles-1', 'rita', 'text', '{"text": "hi"}');
-- an agent, stored directly (register_agent needs the allowlist; see
-- fleetlm_agents)
INSERT INTO fleetlm.agents (agent_id, origin_url, headers, secret_headers)
VALUES ('roles-bot', 'http://127.0.0.1:8081', '{"X-Team": "support"}',
        '{"Authorization": "ROLES_BOT_TOKEN"}');

CREATE ROLE regress_fleet_nobody;
CREATE ROLE regress_fleet_reader IN ROLE fleetlm_reader;
CREATE ROLE regress_fleet_writer IN ROLE fleetlm_writer;
CREATE ROLE regress_fleet_admin IN ROLE fleetlm_admin;

SET ROLE regress_fleet_nobody;
SELECT fleetlm.last_seq('roles-1');
SELECT * FROM fleetlm.messages('roles-1');
SELECT count(*) FROM fleetlm.messages;
SELECT * FROM fleetlm.agents_public;
SELECT fleetlm.register_agent('x', 'http://127.0.0.1:8081');
RESET ROLE;

SET ROLE regress_fleet_reader;
SELECT fleetlm.last_seq('roles-1');
SELECT seq, content FROM fleetlm.messages('roles-1');
SELECT session_id, unread_count FROM fleetlm.inbox('rita');
SELECT count(*) FROM fleetlm.wait_for_messages('roles-1', 0, '0');
SELECT fleetlm.append('roles-1', 'rita', 'text', '{}');
SELECT fleetlm.create_session('rita', 'bot');
SELECT fleetlm.mark_read('roles-1', 'rita', 1);
SELECT fleetlm.delete_session('roles-1');
INSERT INTO fleetlm.messages VALUES ('roles-1', 99, 'x', NULL, 'text', '{}', '{}', now(), NULL);
-- agents: readers see agents_public, not the configuration
SELECT * FROM fleetlm.agents_public;
SELECT count(*) FROM fleetlm.agents;
SELECT secret_headers FROM fleetlm.agents;
SELECT fleetlm.register_agent('x', 'http://127.0.0.1:8081');
SELECT fleetlm.set_agent_status('roles-bot', 'disabled');
SHOW fleetlm.agent_url_allowlist;
SHOW fleetlm.agent_secrets_file;
-- readers may long-poll a reply's chunks, not see the dispatcher's turns
SELECT count(*) FROM fleetlm.wait_for_stream('roles-1', 1, 0, '0');
SELECT * FROM fleetlm.agent_turns;
SELECT * FROM fleetlm.pending_turns;
RESET ROLE;

SET ROLE regress_fleet_writer;
SELECT fleetlm.append('roles-1', 'bot', 'text', '{"text": "hello rita"}');
SELECT * FROM fleetlm.append_batch('roles-1', 'bot', '[{"kind": "text", "content": "a"}]');
SELECT fleetlm.mark_read('roles-1', 'rita', 3);
SELECT seq FROM fleetlm.messages('roles-1');
UPDATE fleetlm.messages SET content = '{}';
DELETE FROM fleetlm.wal_state;
-- writers, like readers, see agents_public only
SELECT * FROM fleetlm.agents_public;
SELECT headers FROM fleetlm.agents;
SELECT fleetlm.register_agent('x', 'http://127.0.0.1:8081');
SELECT fleetlm.set_agent_status('roles-bot', 'disabled');
UPDATE fleetlm.agents SET status = 'disabled';
SHOW fleetlm.agent_url_allowlist;
SELECT * FROM fleetlm.agent_turns;
SELECT * FROM fleetlm.agent_turns();
RESET ROLE;

-- fleetlm_admin manages agents and reads their configuration, but not
-- the allowlist (superuser only), and nothing else
SET ROLE regress_fleet_admin;
SELECT agent_id, origin_url, headers, secret_headers, status FROM fleetlm.agents;
SELECT fleetlm.set_agent_status('roles-bot', 'disabled');
SELECT * FROM fleetlm.agents_public;
-- EXECUTE is granted: this fails on the (empty) allowlist, not on privileges
SELECT fleetlm.register_agent('roles-bot-2', 'http://127.0.0.1:8081');
SHOW fleetlm.agent_url_allowlist;
SHOW fleetlm.agent_secrets_file;
SELECT count(*) FROM fleetlm.agent_turns;
SELECT count(*) FROM fleetlm.pending_turns;
UPDATE fleetlm.agents SET status = 'enabled';
SELECT fleetlm.last_seq('roles-1');
SELECT count(*) FROM fleetlm.messages;
RESET ROLE;
DELETE FROM fleetlm.agents WHERE agent_id = 'roles-bot';

-- ids with quotes, backslashes and SQL fragments are stored verbatim
SELECT fleetlm.create_session($$u'); DELETE FROM fleetlm.sessions; --$$, E'agent\\x', '{}', $$s"; DROP TABLE fleetlm.cursors; --$$);
SELECT fleetlm.append($$s"; DROP TABLE fleetlm.cursors; --$$, $$u'); DELETE FROM fleetlm.sessions; --$$, $$k'||'$$, '{"q": "\u0027; --"}', idempotency_key => $$'); --$$);
SELECT fleetlm.mark_read($$s"; DROP TABLE fleetlm.cursors; --$$, $$u'); DELETE FROM fleetlm.sessions; --$$, 1);
SELECT session_id, agent_id, unread_count FROM fleetlm.inbox($$u'); DELETE FROM fleetlm.sessions; --$$);
SELECT fleetlm.flush();
SELECT session_id, sender_id, recipient_id, kind, content, idempotency_key
  FROM fleetlm.messages WHERE session_id = $$s"; DROP TABLE fleetlm.cursors; --$$;
SELECT count(*) > 0 AS sessions_still_there FROM fleetlm.sessions;
SELECT count(*) AS cursors_still_there FROM fleetlm.cursors WHERE participant_id = $$u'); DELETE FROM fleetlm.sessions; --$$;

DROP ROLE regress_fleet_nobody, regress_fleet_reader, regress_fleet_writer,
    regress_fleet_admin;

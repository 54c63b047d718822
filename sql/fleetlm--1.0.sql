/* fleetlm--1.0.sql: install script of the fleetlm extension */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION fleetlm" to load this file. \quit

-------------------------------------------------------------------------
-- Tables.  The applier writes messages; the SQL functions do the rest.
-- messages.session_id is deliberately not a foreign key: the applier must
-- never fail on a row that append() already acknowledged, and a per-row
-- RI check would halve its speed.
-------------------------------------------------------------------------

CREATE TABLE fleetlm.sessions (
    session_id  text        PRIMARY KEY,
    user_id     text        NOT NULL,
    agent_id    text        NOT NULL,
    metadata    jsonb       NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX sessions_user_idx
    ON fleetlm.sessions (user_id, created_at DESC, session_id DESC);

CREATE TABLE fleetlm.messages (
    session_id      text        NOT NULL,
    seq             bigint      NOT NULL,
    sender_id       text        NOT NULL,
    recipient_id    text,
    kind            text        NOT NULL,
    content         jsonb       NOT NULL,
    metadata        jsonb       NOT NULL DEFAULT '{}',
    inserted_at     timestamptz NOT NULL,
    idempotency_key text,
    PRIMARY KEY (session_id, seq)
);
CREATE INDEX messages_idempotency_key_idx
    ON fleetlm.messages (session_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE fleetlm.cursors (
    session_id      text        NOT NULL,
    participant_id  text        NOT NULL,
    last_read_seq   bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (session_id, participant_id)
);

-- The agent registry (src/agent_registry.c).  register_agent checks every
-- value before it writes; the CHECKs repeat its enums and bounds
-- (agent_registry.h) for rows written by hand.  secret_headers holds the
-- names of secrets, never their values.
CREATE TABLE fleetlm.agents (
    agent_id        text        PRIMARY KEY
                                CHECK (pg_catalog.octet_length(agent_id) BETWEEN 1 AND 64),
    name            text,
    origin_url      text        NOT NULL,
    webhook_path    text        NOT NULL DEFAULT '/webhook',
    protocol        text        NOT NULL DEFAULT 'fleetlm'
                                CHECK (protocol IN ('fleetlm', 'openai')),
    history_mode    text        NOT NULL DEFAULT 'tail'
                                CHECK (history_mode IN ('tail', 'last', 'entire')),
    history_limit   integer     NOT NULL DEFAULT 50
                                CHECK (history_limit BETWEEN 1 AND 10000),
    timeout_ms      integer     NOT NULL DEFAULT 30000
                                CHECK (timeout_ms BETWEEN 100 AND 600000),
    debounce_ms     integer     NOT NULL DEFAULT 500
                                CHECK (debounce_ms BETWEEN 0 AND 60000),
    max_concurrency integer     NOT NULL DEFAULT 16
                                CHECK (max_concurrency BETWEEN 1 AND 1000),
    max_attempts    integer     NOT NULL DEFAULT 5
                                CHECK (max_attempts BETWEEN 1 AND 100),
    headers         jsonb       NOT NULL DEFAULT '{}'
                                CHECK (pg_catalog.jsonb_typeof(headers) = 'object'),
    secret_headers  jsonb       NOT NULL DEFAULT '{}'
                                CHECK (pg_catalog.jsonb_typeof(secret_headers) = 'object'),
    model           text,
    status          text        NOT NULL DEFAULT 'enabled'
                                CHECK (status IN ('enabled', 'disabled')),
    metadata        jsonb       NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- What readers may know of an agent: no URL, no header.
CREATE VIEW fleetlm.agents_public AS
    SELECT agent_id, name, protocol, model, status FROM fleetlm.agents;

-- Sessions with an unanswered user message, maintained by the applier in
-- the same transaction as the rows (src/applier.c): a user message of a
-- session whose agent is registered and enabled upserts last_user_seq; a
-- reply or agent_error with idempotency key 'turn:<T>' deletes the row when
-- T >= last_user_seq.  With the unapplied tail of the log, it is where the
-- dispatcher finds its pending turns after a restart.
CREATE TABLE fleetlm.pending_turns (
    session_id      text        PRIMARY KEY,
    last_user_seq   bigint      NOT NULL
);

-- The applier's position, updated in the same transaction as the rows it
-- inserts.  wal_id ties the table to the WAL directory it belongs to.
CREATE TABLE fleetlm.wal_state (
    one         boolean     PRIMARY KEY DEFAULT true CHECK (one),
    applied_lsn bigint      NOT NULL DEFAULT 0,
    wal_id      bigint,
    applied_at  timestamptz
);
INSERT INTO fleetlm.wal_state DEFAULT VALUES;

SELECT pg_catalog.pg_extension_config_dump('fleetlm.sessions', '');
SELECT pg_catalog.pg_extension_config_dump('fleetlm.messages', '');
SELECT pg_catalog.pg_extension_config_dump('fleetlm.cursors', '');
SELECT pg_catalog.pg_extension_config_dump('fleetlm.agents', '');
SELECT pg_catalog.pg_extension_config_dump('fleetlm.pending_turns', '');

-------------------------------------------------------------------------
-- Functions
-------------------------------------------------------------------------

CREATE FUNCTION fleetlm.create_session(
    user_id     text,
    agent_id    text,
    metadata    jsonb DEFAULT '{}',
    session_id  text  DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'fleetlm_create_session'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION fleetlm.append(
    session_id      text,
    sender_id       text,
    kind            text,
    content         jsonb,
    metadata        jsonb DEFAULT '{}',
    idempotency_key text  DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'fleetlm_append'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION fleetlm.append_batch(
    session_id  text,
    sender_id   text,
    messages    jsonb)
RETURNS SETOF bigint
AS 'MODULE_PATHNAME', 'fleetlm_append_batch'
LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 10;

CREATE FUNCTION fleetlm.delete_session(session_id text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'fleetlm_delete_session'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE TYPE fleetlm.session_info AS (
    session_id  text,
    user_id     text,
    agent_id    text,
    metadata    jsonb,
    created_at  timestamptz,
    last_seq    bigint
);

CREATE FUNCTION fleetlm.get_session(session_id text)
RETURNS fleetlm.session_info
AS 'MODULE_PATHNAME', 'fleetlm_get_session'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION fleetlm.list_sessions(
    user_id     text,
    max_count   integer DEFAULT 100,
    before_id   text    DEFAULT NULL)
RETURNS SETOF fleetlm.session_info
AS 'MODULE_PATHNAME', 'fleetlm_list_sessions'
LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 100;

CREATE FUNCTION fleetlm.mark_read(
    session_id      text,
    participant_id  text,
    last_seq        bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'fleetlm_mark_read'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION fleetlm.inbox(
    user_id     text,
    max_count   integer DEFAULT 100,
    OUT session_id      text,
    OUT agent_id        text,
    OUT last_seq        bigint,
    OUT last_message_at timestamptz,
    OUT last_sender_id  text,
    OUT last_read_seq   bigint,
    OUT unread_count    bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'fleetlm_inbox'
LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 100;

CREATE FUNCTION fleetlm.wait_for_messages(
    session_id  text,
    after_seq   bigint,
    timeout     interval DEFAULT '30s',
    max_count   integer  DEFAULT 100)
RETURNS SETOF fleetlm.messages
AS 'MODULE_PATHNAME', 'fleetlm_wait_for_messages'
LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 100;

CREATE FUNCTION fleetlm.messages(
    session_id  text,
    after_seq   bigint  DEFAULT 0,
    max_count   integer DEFAULT 100)
RETURNS SETOF fleetlm.messages
AS 'MODULE_PATHNAME', 'fleetlm_messages'
LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 100;

CREATE FUNCTION fleetlm.last_seq(session_id text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'fleetlm_last_seq'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION fleetlm.flush()
RETURNS void
AS 'MODULE_PATHNAME', 'fleetlm_flush'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION fleetlm.stats(
    OUT state               text,
    OUT inserted_lsn        bigint,
    OUT written_lsn         bigint,
    OUT durable_lsn         bigint,
    OUT applied_lsn         bigint,
    OUT appends             bigint,
    OUT append_bytes        bigint,
    OUT fsyncs              bigint,
    OUT records_per_fsync   float8,
    OUT fsync_time_ms       float8,
    OUT applier_batches     bigint,
    OUT applier_rows        bigint,
    OUT applier_time_ms     float8,
    OUT applier_errors      bigint,
    OUT ring_size           bigint,
    OUT ring_used           bigint,
    OUT ring_space_waits    bigint,
    OUT active_sessions     bigint,
    OUT recovery_records    bigint,
    OUT recovery_time_ms    float8,
    OUT shmem_size          bigint,
    OUT wal_directory       text,
    OUT writer_error        text,
    OUT writer_pid          integer,
    OUT applier_pid         integer,
    OUT dispatcher_pid      integer,
    OUT turns_started       bigint,
    OUT turns_completed     bigint,
    OUT turns_failed        bigint,
    OUT attempts_retried    bigint,
    OUT calls_in_flight     integer,
    OUT turns_tracked       integer,
    OUT http_time_ms        float8)
RETURNS record
AS 'MODULE_PATHNAME', 'fleetlm_stats'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE VIEW fleetlm.stat AS SELECT * FROM fleetlm.stats();

-- The agent registry (src/agent_registry.c): checks every argument,
-- including the URL against fleetlm.agent_url_allowlist, then upserts.
CREATE FUNCTION fleetlm.register_agent(
    agent_id        text,
    origin_url      text,
    webhook_path    text    DEFAULT '/webhook',
    protocol        text    DEFAULT 'fleetlm',
    history_mode    text    DEFAULT 'tail',
    history_limit   integer DEFAULT 50,
    timeout_ms      integer DEFAULT 30000,
    debounce_ms     integer DEFAULT 500,
    max_concurrency integer DEFAULT 16,
    max_attempts    integer DEFAULT 5,
    headers         jsonb   DEFAULT '{}',
    secret_headers  jsonb   DEFAULT '{}',
    name            text    DEFAULT NULL,
    model           text    DEFAULT NULL)
RETURNS fleetlm.agents
AS 'MODULE_PATHNAME', 'fleetlm_register_agent'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION fleetlm.set_agent_status(agent_id text, status text)
RETURNS void
AS 'MODULE_PATHNAME', 'fleetlm_set_agent_status'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Long-poll for the chunks of a reply being streamed (src/stream.c).
CREATE FUNCTION fleetlm.wait_for_stream(
    session_id  text,
    turn        bigint,
    after_chunk integer  DEFAULT 0,
    timeout     interval DEFAULT '30s')
RETURNS TABLE(turn bigint, attempt integer, chunk_no integer, chunk jsonb, done boolean)
AS 'MODULE_PATHNAME', 'fleetlm_wait_for_stream'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- The dispatcher's turns: pending, running, retrying (src/dispatch_turns.c).
CREATE FUNCTION fleetlm.agent_turns(
    OUT session_id  text,
    OUT agent_id    text,
    OUT turn        bigint,
    OUT user_seq    bigint,
    OUT attempt     integer,
    OUT state       text,
    OUT due_at      timestamptz,
    OUT last_status integer,
    OUT last_error  text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'fleetlm_agent_turns'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE VIEW fleetlm.agent_turns AS SELECT * FROM fleetlm.agent_turns();

-------------------------------------------------------------------------
-- Privileges: nothing for PUBLIC; fleetlm_reader reads, fleetlm_writer
-- (a member of fleetlm_reader) also writes; fleetlm_admin manages agents,
-- and is the only role that sees their configuration (readers see the view
-- agents_public).  The functions run their statements as the extension
-- owner, so the roles need no table rights.
-------------------------------------------------------------------------

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'fleetlm_reader') THEN
        CREATE ROLE fleetlm_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'fleetlm_writer') THEN
        CREATE ROLE fleetlm_writer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'fleetlm_admin') THEN
        CREATE ROLE fleetlm_admin NOLOGIN;
    END IF;
END
$$;
GRANT fleetlm_reader TO fleetlm_writer;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA fleetlm FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA fleetlm FROM PUBLIC;
GRANT USAGE ON SCHEMA fleetlm TO fleetlm_reader;

GRANT EXECUTE ON FUNCTION
    fleetlm.messages(text, bigint, integer),
    fleetlm.last_seq(text),
    fleetlm.get_session(text),
    fleetlm.list_sessions(text, integer, text),
    fleetlm.inbox(text, integer),
    fleetlm.wait_for_messages(text, bigint, interval, integer),
    fleetlm.wait_for_stream(text, bigint, integer, interval),
    fleetlm.stats()
TO fleetlm_reader;
GRANT SELECT ON fleetlm.sessions, fleetlm.messages, fleetlm.cursors,
    fleetlm.agents_public, fleetlm.stat
TO fleetlm_reader;

GRANT EXECUTE ON FUNCTION
    fleetlm.create_session(text, text, jsonb, text),
    fleetlm.append(text, text, text, jsonb, jsonb, text),
    fleetlm.append_batch(text, text, jsonb),
    fleetlm.delete_session(text),
    fleetlm.mark_read(text, text, bigint),
    fleetlm.flush()
TO fleetlm_writer;

GRANT USAGE ON SCHEMA fleetlm TO fleetlm_admin;
GRANT EXECUTE ON FUNCTION
    fleetlm.register_agent(text, text, text, text, text, integer, integer,
                           integer, integer, integer, jsonb, jsonb, text, text),
    fleetlm.set_agent_status(text, text),
    fleetlm.agent_turns()
TO fleetlm_admin;
GRANT SELECT ON fleetlm.agents, fleetlm.agents_public, fleetlm.agent_turns,
    fleetlm.pending_turns
TO fleetlm_admin;

-- Tell a running server that its WAL belongs to an earlier installation,
-- if there was one (DROP EXTENSION, then CREATE EXTENSION without restart).
CREATE FUNCTION fleetlm._created()
RETURNS void
AS 'MODULE_PATHNAME', 'fleetlm_created'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
REVOKE ALL ON FUNCTION fleetlm._created() FROM PUBLIC;
SELECT fleetlm._created();

-------------------------------------------------------------------------
-- The agent engine's reply parser and compactor (src/agent_stream.c; this
-- entry point is src/agent_sql.c), as a
-- function for tests and for debugging an agent: the reply body is fed in
-- awkward slices (1, 2, 3, 7, 13, 31, 64 bytes in turn, so lines, CRLFs,
-- SSE events and UTF-8 sequences are split everywhere) and compacted into
-- one assistant message.  It reads no data, so readers may run it.
-- IMMUTABLE: the result depends on the arguments alone; when the reply has
-- no start.messageId, the message id is "msg-" and a hash of the body.
-------------------------------------------------------------------------

CREATE FUNCTION fleetlm.compact_agent_reply(
    body        text,
    protocol    text    DEFAULT 'fleetlm',
    max_line    integer DEFAULT 1048576,
    max_bytes   integer DEFAULT 16777216)
RETURNS TABLE(message jsonb, complete boolean, aborted boolean, error text,
              chunks integer)
AS 'MODULE_PATHNAME', 'fleetlm_compact_agent_reply'
LANGUAGE C IMMUTABLE PARALLEL SAFE ROWS 1;
REVOKE ALL ON FUNCTION fleetlm.compact_agent_reply(text, text, integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION fleetlm.compact_agent_reply(text, text, integer, integer) TO fleetlm_reader;

-------------------------------------------------------------------------
-- Moving sessions to another server (README.md, "Moving a partition";
-- fleetlm_proxy's move_partition uses them).  export_session writes one
-- session as a jsonb document; import_session re-creates it on another
-- server with the same seqs, senders, recipients, kinds, contents,
-- metadata, inserted_at, idempotency keys, created_at and read cursors.
-- A deleted session cannot be exported, so it cannot come back.  They run
-- as the extension owner (SECURITY DEFINER) and only fleetlm_admin may
-- call them.
-------------------------------------------------------------------------

-- The document of one session.  With flush (the default) it first waits
-- like flush() until every durable record is in the tables; in any case
-- the messages are read with messages(), the table and the ring, so a
-- synchronous append acknowledged before the call is in the document.
-- The caller must keep new writes to the session away while it exports
-- (fleetlm_proxy fences the session's partition): a later append is not
-- in the document.  A session with an agent turn pending or running is
-- refused (55006): the dispatcher would append its answer here later.
CREATE FUNCTION fleetlm.export_session(
    session_id  text,
    flush       boolean DEFAULT true)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    s       fleetlm.session_info;
    msgs    jsonb := '[]';
    page    jsonb;
    got     bigint;
    after   bigint := 0;
BEGIN
    IF session_id IS NULL THEN
        RAISE EXCEPTION 'session_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF flush IS NULL THEN
        RAISE EXCEPTION 'flush must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF flush THEN
        PERFORM fleetlm.flush();
    END IF;
    s := fleetlm.get_session(session_id);      -- P0002: unknown or deleted
    IF EXISTS (SELECT 1 FROM fleetlm.pending_turns p WHERE p.session_id = session_id)
       OR EXISTS (SELECT 1 FROM fleetlm.agent_turns() t WHERE t.session_id = session_id) THEN
        RAISE EXCEPTION 'fleetlm session "%" has an agent turn pending or running', session_id
            USING ERRCODE = 'object_in_use',
                  DETAIL = 'The dispatcher would append the answer after the export.',
                  HINT = 'Export it again once fleetlm.agent_turns shows no turn of the session.';
    END IF;
    LOOP
        SELECT jsonb_agg(to_jsonb(m) - 'session_id' ORDER BY m.seq), count(*), max(m.seq)
          INTO page, got, after
          FROM fleetlm.messages(session_id, after, 100000) m;
        msgs := msgs || COALESCE(page, '[]');
        EXIT WHEN got < 100000;
    END LOOP;
    RETURN jsonb_build_object(
        'format', 'fleetlm.session.v1',
        'session', jsonb_build_object(
            'session_id', s.session_id,
            'user_id', s.user_id,
            'agent_id', s.agent_id,
            'metadata', s.metadata,
            'created_at', s.created_at),
        'messages', msgs,
        'cursors', COALESCE((SELECT jsonb_agg(jsonb_build_object(
                                 'participant_id', c.participant_id,
                                 'last_read_seq', c.last_read_seq,
                                 'updated_at', c.updated_at) ORDER BY c.participant_id)
                               FROM fleetlm.cursors c
                              WHERE c.session_id = session_id), '[]'));
END
$$;

-- Re-create a session from export_session's document, in the caller's
-- transaction; returns its last seq.  The session must not exist here
-- (23505, nothing written); a pending deletion of the same id is waited
-- for first, as by create_session.  Safe with the session table in
-- shared memory: a session without a row has no entry (src/README, "The
-- Session Table"), so the first append after the commit loads the
-- imported rows, its last seq and keys from the tables.  The document is
-- checked before anything is written; a bad one is an error naming the
-- bad value.
CREATE FUNCTION fleetlm.import_session(session jsonb)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    s       fleetlm.sessions;
    bad     record;
    n       bigint;
BEGIN
    IF session IS NULL THEN
        RAISE EXCEPTION 'session must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF jsonb_typeof(session) IS DISTINCT FROM 'object'
       OR session->>'format' IS DISTINCT FROM 'fleetlm.session.v1' THEN
        RAISE EXCEPTION 'session is not a document of fleetlm.export_session (format %)',
                COALESCE(session->>'format', 'missing')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Its format must be "fleetlm.session.v1".';
    END IF;
    IF jsonb_typeof(session->'session') IS DISTINCT FROM 'object'
       OR jsonb_typeof(session->'messages') IS DISTINCT FROM 'array'
       OR jsonb_typeof(session->'cursors') IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'session must have an object "session" and arrays "messages" and "cursors"'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    s := jsonb_populate_record(NULL::fleetlm.sessions, session->'session');
    IF s.session_id IS NULL THEN
        RAISE EXCEPTION 'session.session_id must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF s.created_at IS NULL THEN
        RAISE EXCEPTION 'session.created_at of fleetlm session "%" must not be NULL', s.session_id
            USING ERRCODE = 'null_value_not_allowed';
    END IF;

    -- the messages: seqs 1, 2, 3, ... in order, every column a message has
    SELECT m.ordinality AS ord, m.seq, m.session_id, m.sender_id, m.kind, m.content,
           m.metadata, m.inserted_at
      INTO bad
      FROM jsonb_populate_recordset(NULL::fleetlm.messages, session->'messages')
               WITH ORDINALITY AS m
     WHERE m.seq IS DISTINCT FROM m.ordinality
        OR m.session_id IS DISTINCT FROM s.session_id AND m.session_id IS NOT NULL
        OR COALESCE(m.sender_id, '') = '' OR COALESCE(m.kind, '') = ''
        OR m.content IS NULL OR m.inserted_at IS NULL
        OR jsonb_typeof(COALESCE(m.metadata, '{}')) <> 'object'
     ORDER BY m.ordinality
     LIMIT 1;
    IF FOUND THEN
        IF bad.seq IS DISTINCT FROM bad.ord THEN
            RAISE EXCEPTION 'message % of fleetlm session "%" has seq %, not %',
                    bad.ord, s.session_id, COALESCE(bad.seq::text, 'NULL'), bad.ord
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'The messages must have the seqs 1, 2, 3, ... in order.';
        ELSIF bad.session_id IS DISTINCT FROM s.session_id AND bad.session_id IS NOT NULL THEN
            RAISE EXCEPTION 'message % of fleetlm session "%" belongs to session "%"',
                    bad.seq, s.session_id, bad.session_id
                USING ERRCODE = 'invalid_parameter_value';
        ELSIF jsonb_typeof(COALESCE(bad.metadata, '{}')) <> 'object' THEN
            RAISE EXCEPTION 'metadata of message % of fleetlm session "%" must be a JSON object: %',
                    bad.seq, s.session_id, bad.metadata
                USING ERRCODE = 'invalid_parameter_value';
        ELSE
            RAISE EXCEPTION 'message % of fleetlm session "%" lacks sender_id, kind, content or inserted_at',
                    bad.seq, s.session_id
                USING ERRCODE = 'null_value_not_allowed';
        END IF;
    END IF;
    n := jsonb_array_length(session->'messages');
    SELECT m.idempotency_key INTO bad
      FROM jsonb_populate_recordset(NULL::fleetlm.messages, session->'messages') m
     WHERE m.idempotency_key IS NOT NULL
     GROUP BY m.idempotency_key HAVING count(*) > 1
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'idempotency key "%" is on several messages of fleetlm session "%"',
                bad.idempotency_key, s.session_id
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- the read cursors: one per participant, within the session's seqs
    SELECT c.participant_id, c.last_read_seq,
           count(*) OVER (PARTITION BY c.participant_id) AS copies
      INTO bad
      FROM jsonb_populate_recordset(NULL::fleetlm.cursors, session->'cursors') c
     ORDER BY (COALESCE(c.participant_id, '') = ''
               OR c.last_read_seq IS NULL OR c.last_read_seq < 0 OR c.last_read_seq > n) DESC,
              copies DESC
     LIMIT 1;
    IF FOUND AND bad.copies > 1 THEN
        RAISE EXCEPTION 'participant "%" has % read cursors in fleetlm session "%"',
                bad.participant_id, bad.copies, s.session_id
            USING ERRCODE = 'invalid_parameter_value';
    ELSIF FOUND AND (COALESCE(bad.participant_id, '') = '' OR bad.last_read_seq IS NULL
                     OR bad.last_read_seq < 0 OR bad.last_read_seq > n) THEN
        RAISE EXCEPTION 'bad read cursor of participant "%" of fleetlm session "%": last_read_seq %',
                COALESCE(bad.participant_id, 'NULL'), s.session_id,
                COALESCE(bad.last_read_seq::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('A participant id and a last_read_seq from 0 to %s.', n);
    END IF;

    -- checks its ids and metadata; 23505 if the session exists here
    PERFORM fleetlm.create_session(s.user_id, s.agent_id, s.metadata, s.session_id);
    UPDATE fleetlm.sessions t SET created_at = s.created_at WHERE t.session_id = s.session_id;
    INSERT INTO fleetlm.messages (session_id, seq, sender_id, recipient_id, kind, content,
                                  metadata, inserted_at, idempotency_key)
    SELECT s.session_id, m.seq, m.sender_id, m.recipient_id, m.kind, m.content,
           COALESCE(m.metadata, '{}'), m.inserted_at, m.idempotency_key
      FROM jsonb_populate_recordset(NULL::fleetlm.messages, session->'messages') m;
    INSERT INTO fleetlm.cursors (session_id, participant_id, last_read_seq, updated_at)
    SELECT s.session_id, c.participant_id, c.last_read_seq, COALESCE(c.updated_at, now())
      FROM jsonb_populate_recordset(NULL::fleetlm.cursors, session->'cursors') c;
    RETURN n;
END
$$;

REVOKE ALL ON FUNCTION fleetlm.export_session(text, boolean), fleetlm.import_session(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION fleetlm.export_session(text, boolean), fleetlm.import_session(jsonb)
TO fleetlm_admin;

-------------------------------------------------------------------------
-- Appends to many sessions in one call, sharing one wait for durability
-- (what a pipeline of appends gets on one server): each element is an
-- append(session_ids[i], sender_ids[i], kinds[i], contents[i],
-- metadata[i], idempotency_keys[i]), in order, returning its seq.  The
-- appends but the last are made with synchronous_append off; unless the
-- caller had it off, the last one waits for durability, which covers every
-- record of the call (the log is durable as a prefix).  When the last has
-- an idempotency key (it may be a retry that appends nothing), the call
-- instead waits once per session until the largest seq it returned is
-- durable.  Not atomic: after an error the earlier
-- elements are appended and not reported; retry with idempotency keys.
-- fleetlm_proxy's append_many splits such a call by partition.
-------------------------------------------------------------------------

CREATE FUNCTION fleetlm.append_many(
    session_ids         text[],
    sender_ids          text[],
    kinds               text[],
    contents            jsonb[],
    metadata            jsonb[] DEFAULT NULL,
    idempotency_keys    text[]  DEFAULT NULL)
RETURNS SETOF bigint
LANGUAGE plpgsql VOLATILE ROWS 100
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n       integer := cardinality(session_ids);
    sync    boolean := current_setting('fleetlm.synchronous_append')::boolean;
    seqs    bigint[] := '{}';
    w       record;
BEGIN
    IF session_ids IS NULL OR sender_ids IS NULL OR kinds IS NULL OR contents IS NULL THEN
        RAISE EXCEPTION '% must not be NULL',
                CASE WHEN session_ids IS NULL THEN 'session_ids' WHEN sender_ids IS NULL THEN 'sender_ids'
                     WHEN kinds IS NULL THEN 'kinds' ELSE 'contents' END
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF cardinality(sender_ids) <> n OR cardinality(kinds) <> n OR cardinality(contents) <> n
       OR cardinality(metadata) <> n OR cardinality(idempotency_keys) <> n THEN
        RAISE EXCEPTION 'the arrays of append_many must have the same length: session_ids has %, sender_ids %, kinds %, contents %, metadata %, idempotency_keys %',
                n, cardinality(sender_ids), cardinality(kinds), cardinality(contents),
                COALESCE(cardinality(metadata)::text, 'NULL'),
                COALESCE(cardinality(idempotency_keys)::text, 'NULL')
            USING ERRCODE = 'array_subscript_error';
    END IF;
    PERFORM set_config('fleetlm.synchronous_append', 'off', true);
    FOR i IN 1 .. n LOOP
        IF i = n AND sync AND idempotency_keys[n] IS NULL THEN
            -- the last append is a new record, after all the others: its
            -- wait for durability covers them
            PERFORM set_config('fleetlm.synchronous_append', 'on', true);
        END IF;
        seqs := seqs || fleetlm.append(session_ids[i], sender_ids[i], kinds[i], contents[i],
                                       COALESCE(metadata[i], '{}'), idempotency_keys[i]);
    END LOOP;
    PERFORM set_config('fleetlm.synchronous_append', sync::text, true);
    IF sync AND idempotency_keys[n] IS NOT NULL THEN
        -- the last one may have found an earlier message by its key, whose
        -- record precedes the others: wait for each session's largest seq
        FOR w IN SELECT u.s, max(u.q) AS q FROM unnest(session_ids, seqs) u(s, q) GROUP BY u.s LOOP
            PERFORM 1 FROM fleetlm.wait_for_messages(w.s, w.q - 1, '1 day', 1);
        END LOOP;
    END IF;
    RETURN QUERY SELECT unnest(seqs);
END
$$;

REVOKE ALL ON FUNCTION fleetlm.append_many(text[], text[], text[], jsonb[], jsonb[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION fleetlm.append_many(text[], text[], text[], jsonb[], jsonb[], text[])
TO fleetlm_writer;

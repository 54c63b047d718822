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

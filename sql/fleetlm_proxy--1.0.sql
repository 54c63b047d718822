/* fleetlm_proxy--1.0.sql: install script of the fleetlm_proxy extension
 *
 * fleetlm's SQL API on a coordinator database that does not have fleetlm:
 * the same function names, argument names, defaults and result columns in
 * schema fleetlm, each call sent with PL/Proxy to the fleetlm servers
 * ("shards") of the cluster, PL/Proxy's foreign server fleetlm_cluster:
 *
 *   CREATE SERVER fleetlm_cluster FOREIGN DATA WRAPPER plproxy
 *       OPTIONS (p0 'host=a dbname=app', p1 'host=b dbname=app', ...);
 *   CREATE USER MAPPING FOR PUBLIC SERVER fleetlm_cluster OPTIONS (user '...');
 *   GRANT USAGE ON FOREIGN SERVER fleetlm_cluster TO fleetlm_reader, fleetlm_admin;
 *
 * A session lives on partition fleetlm.partition_of(session_id) & (n - 1)
 * of the cluster's n partitions (a power of two); partitions name servers,
 * and many partitions may name the same server.  Calls keyed by a session
 * run on its partition; list_sessions, inbox, flush, stats and the agent
 * registry run on every server.  A shard's errors reach the client with
 * their SQLSTATE; PL/Proxy prefixes the message with the function and
 * "REMOTE ERROR: ".  Coordinator and shards must run the same fleetlm
 * version, encoding, collation and DateStyle: values travel as text or in
 * binary, and listings are merged here with the coordinator's collation.
 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION fleetlm_proxy" to load this file. \quit

-------------------------------------------------------------------------
-- The row types of fleetlm's results.  On a shard fleetlm.messages and
-- fleetlm.agents are tables; here they are composite types with the same
-- columns in the same order, so results keep their column names.
-------------------------------------------------------------------------

CREATE TYPE fleetlm.messages AS (
    session_id      text,
    seq             bigint,
    sender_id       text,
    recipient_id    text,
    kind            text,
    content         jsonb,
    metadata        jsonb,
    inserted_at     timestamptz,
    idempotency_key text
);

CREATE TYPE fleetlm.session_info AS (
    session_id  text,
    user_id     text,
    agent_id    text,
    metadata    jsonb,
    created_at  timestamptz,
    last_seq    bigint
);

CREATE TYPE fleetlm.agents AS (
    agent_id        text,
    name            text,
    origin_url      text,
    webhook_path    text,
    protocol        text,
    history_mode    text,
    history_limit   integer,
    timeout_ms      integer,
    debounce_ms     integer,
    max_concurrency integer,
    max_attempts    integer,
    headers         jsonb,
    secret_headers  jsonb,
    model           text,
    status          text,
    metadata        jsonb,
    created_at      timestamptz,
    updated_at      timestamptz
);

-------------------------------------------------------------------------
-- Routing.  partition_of is the one hash that places sessions, pinned
-- here and nowhere else: the first 4 bytes of the SHA-256 of the id's
-- UTF-8 bytes, big-endian, top bit cleared (0 .. 2^31 - 1).  Not
-- hashtext: PostgreSQL has changed it across major versions before, and a
-- changed hash would silently route existing sessions to the wrong shard.
-- SHA-256 is fixed by FIPS 180-4 and is available where MD5 is disabled.
-- PL/Proxy maps it to partition hash & (n - 1); with the top bit clear
-- that is also hash % n.  A NULL id hashes to 0, so that the shard of
-- partition 0 reports the NULL exactly as fleetlm does.
-------------------------------------------------------------------------

CREATE FUNCTION fleetlm.partition_of(session_id text)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN COALESCE(
    ('x' OPERATOR(pg_catalog.||) pg_catalog.encode(
        pg_catalog.substr(pg_catalog.sha256(pg_catalog.convert_to(session_id, 'UTF8')), 1, 4),
        'hex'))::bit(32)::integer OPERATOR(pg_catalog.&) 2147483647,
    0);

-- The cluster's partition count (the options p<N> or partition_<N> of
-- the foreign server fleetlm_cluster), NULL without the server.
CREATE FUNCTION fleetlm.partition_count()
RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE
RETURN (SELECT NULLIF(pg_catalog.count(*), 0)::integer
          FROM pg_catalog.pg_foreign_server s,
               pg_catalog.pg_options_to_table(s.srvoptions) o
         WHERE s.srvname OPERATOR(pg_catalog.=) 'fleetlm_cluster'
           AND o.option_name OPERATOR(pg_catalog.~) '^(p|partition_)[0-9]+$');

-- The partition a session lives on in the cluster as configured now.
CREATE FUNCTION fleetlm.session_partition(session_id text)
RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE
RETURN fleetlm.partition_of(session_id) OPERATOR(pg_catalog.%) fleetlm.partition_count();

-- The servers of the cluster: one row per distinct connection string
-- (PL/Proxy shares one connection among the partitions that name the same
-- string), numbered from 0 in the order of their lowest partition.
CREATE FUNCTION fleetlm._shards(
    OUT shard           integer,
    OUT first_partition integer,
    OUT partitions      integer[])
RETURNS SETOF record
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT (pg_catalog.row_number() OVER (ORDER BY pg_catalog.min(p.part)) OPERATOR(pg_catalog.-) 1)::integer,
           pg_catalog.min(p.part),
           pg_catalog.array_agg(p.part ORDER BY p.part)
      FROM (SELECT pg_catalog.substring(o.option_name, '[0-9]+$')::integer AS part,
                   o.option_value AS connstr
              FROM pg_catalog.pg_foreign_server s,
                   pg_catalog.pg_options_to_table(s.srvoptions) o
             WHERE s.srvname OPERATOR(pg_catalog.=) 'fleetlm_cluster'
               AND o.option_name OPERATOR(pg_catalog.~) '^(p|partition_)[0-9]+$') p
     GROUP BY p.connstr
     ORDER BY 2;
END;

-- A new session id made on the coordinator, in fleetlm's format
-- (src/ulid.c): a ULID, 48 bits of milliseconds since the Unix epoch and
-- 80 random bits in 26 characters of Crockford's base32, so ids sort by
-- creation time.  The random bits are the first 5 bytes of two version-4
-- UUIDs (gen_random_uuid uses the server's strong random source; a v4
-- UUID's version and variant bits are in its bytes 6 and 8).
CREATE FUNCTION fleetlm.new_session_id()
RETURNS text
LANGUAGE sql VOLATILE PARALLEL SAFE
BEGIN ATOMIC
    SELECT pg_catalog.string_agg(
               pg_catalog.substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ',
                   pg_catalog.substring(b.bits, 5 OPERATOR(pg_catalog.*) i.i OPERATOR(pg_catalog.+) 1, 5)::bit(5)::integer
                       OPERATOR(pg_catalog.+) 1,
                   1),
               '' ORDER BY i.i)
      FROM (SELECT B'00'
                   OPERATOR(pg_catalog.||) pg_catalog.floor(EXTRACT(epoch FROM pg_catalog.clock_timestamp())
                                                OPERATOR(pg_catalog.*) 1000)::bigint::bit(48)
                   OPERATOR(pg_catalog.||) ('x' OPERATOR(pg_catalog.||) pg_catalog.encode(
                        pg_catalog.substr(pg_catalog.uuid_send(pg_catalog.gen_random_uuid()), 1, 5)
                        OPERATOR(pg_catalog.||)
                        pg_catalog.substr(pg_catalog.uuid_send(pg_catalog.gen_random_uuid()), 1, 5),
                        'hex'))::bit(80) AS bits) b,
           pg_catalog.generate_series(0, 25) AS i(i);
END;

-------------------------------------------------------------------------
-- Fences (see "Moving partitions" below).  A fenced partition's sessions
-- are unavailable on this coordinator: every call keyed by one of them
-- fails at once with 55P03 and a message naming the partition, and the
-- client retries.  The fence holds the partition count it was set with,
-- so the check needs no catalog lookup; with no fence it is a scan of an
-- empty table.
-------------------------------------------------------------------------

CREATE TABLE fleetlm.fences (
    partition   integer     PRIMARY KEY CHECK (partition >= 0),
    partitions  integer     NOT NULL CHECK (partitions > 0),
    fenced_at   timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    source      text,
    target      text
);

-- The partition hash of a session, as partition_of, unless its partition
-- is fenced: then the error.  Every call keyed by a session routes with it.
CREATE FUNCTION fleetlm._route(session_id text)
RETURNS integer
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    h       integer := fleetlm.partition_of(session_id);
    fenced  integer;
BEGIN
    SELECT f.partition INTO fenced
      FROM fleetlm.fences f
     WHERE f.partition = h % f.partitions
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'fleetlm partition % is fenced: session "%" is being moved to another server',
                fenced, session_id
            USING ERRCODE = 'lock_not_available',
                  HINT = 'Retry in a moment.';
    END IF;
    RETURN h;
END
$$;

-------------------------------------------------------------------------
-- Calls keyed by a session: run on the session's partition.  PL/Proxy
-- generates the remote call "select <columns> from fleetlm.<name>($1, ...)"
-- with every argument, so the defaults here must equal fleetlm's.
-------------------------------------------------------------------------

-- create_session with the id given (the coordinator's create_session,
-- below, makes one when it is not)
CREATE FUNCTION fleetlm._create_session(
    user_id     text,
    agent_id    text,
    metadata    jsonb,
    session_id  text)
RETURNS text
AS $$
    CLUSTER 'fleetlm_cluster';
    RUN ON fleetlm._route(session_id);
    TARGET fleetlm.create_session;
$$ LANGUAGE plproxy;

CREATE FUNCTION fleetlm.create_session(
    user_id     text,
    agent_id    text,
    metadata    jsonb DEFAULT '{}',
    session_id  text  DEFAULT NULL)
RETURNS text
LANGUAGE sql VOLATILE
RETURN fleetlm._create_session(user_id, agent_id, metadata,
                               COALESCE(session_id, fleetlm.new_session_id()));

CREATE FUNCTION fleetlm.append(
    session_id      text,
    sender_id       text,
    kind            text,
    content         jsonb,
    metadata        jsonb DEFAULT '{}',
    idempotency_key text  DEFAULT NULL)
RETURNS bigint
AS $$
    CLUSTER 'fleetlm_cluster';
    RUN ON fleetlm._route(session_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION fleetlm.append_batch(
    session_id  text,
    sender_id   text,
    messages    jsonb)
RETURNS SETOF bigint
AS $$
    CLUSTER 'fleetlm_cluster';
    RUN ON fleetlm._route(session_id);
$$ LANGUAGE plproxy ROWS 10;

CREATE FUNCTION fleetlm.delete_session(session_id text)
RETURNS boolean
AS $$
    CLUSTER 'fleetlm_cluster';
    RUN ON fleetlm._route(session_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION fleetlm.get_session(session_id text)
RETURNS fleetlm.session_info
AS $$
    CLUSTER 'fleetlm_cluster';
    RUN ON fleetlm._route(session_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION fleetlm.mark_read(
    session_id      text,
    participant_id  text,
    last_seq        bigint)
RETURNS bigint
AS $$
    CLUSTER 'fleetlm_cluster';
    RUN ON fleetlm._route(session_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION fleetlm.wait_for_messages(
    session_id  text,
    after_seq   bigint,
    timeout     interval DEFAULT '30s',
    max_count   integer  DEFAULT 100)
RETURNS SETOF fleetlm.messages
AS $$
    CLUSTER 'fleetlm_cluster';
    RUN ON fleetlm._route(session_id);
$$ LANGUAGE plproxy ROWS 100;

CREATE FUNCTION fleetlm.messages(
    session_id  text,
    after_seq   bigint  DEFAULT 0,
    max_count   integer DEFAULT 100)
RETURNS SETOF fleetlm.messages
AS $$
    CLUSTER 'fleetlm_cluster';
    RUN ON fleetlm._route(session_id);
$$ LANGUAGE plproxy ROWS 100;

CREATE FUNCTION fleetlm.last_seq(session_id text)
RETURNS bigint
AS $$
    CLUSTER 'fleetlm_cluster';
    RUN ON fleetlm._route(session_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION fleetlm.wait_for_stream(
    session_id  text,
    turn        bigint,
    after_chunk integer  DEFAULT 0,
    timeout     interval DEFAULT '30s')
RETURNS TABLE(turn bigint, attempt integer, chunk_no integer, chunk jsonb, done boolean)
AS $$
    CLUSTER 'fleetlm_cluster';
    RUN ON fleetlm._route(session_id);
$$ LANGUAGE plproxy;

-------------------------------------------------------------------------
-- Listings: every shard lists its part, the coordinator merges in the
-- order of one server (src/api.c) and cuts at max_count.  The LIMIT is
-- NULL (none) when max_count is out of range, so that the shards, not the
-- coordinator, reject it with fleetlm's error.  During a move a session
-- of the fenced partition may be on two servers, as identical copies (no
-- call writes to it): the merge keeps one row per session.  Each shard's
-- first max_count rows still hold every row of the merged first max_count.
-------------------------------------------------------------------------

-- list_sessions' before_id, on the anchor's own shard: the same call
-- checks every argument as one server would (and that before_id exists),
-- then the anchor's created_at is read.
CREATE FUNCTION fleetlm._list_sessions_anchor(
    user_id     text,
    max_count   integer,
    before_id   text)
RETURNS timestamptz
AS $$
    CLUSTER 'fleetlm_cluster';
    RUN ON fleetlm._route(before_id);
    SELECT b.created_at
      FROM (SELECT count(*) AS n
              FROM fleetlm.list_sessions($1::text, $2::integer, $3::text) l) v
      LEFT JOIN fleetlm.sessions b ON b.session_id = $3::text;
$$ LANGUAGE plproxy;

-- One page of every shard, keyset-paged from the anchor (created_at,
-- session_id) when there is one.  fleetlm's list_sessions pages from a
-- session of its own, so each shard starts from its local anchor: its
-- first session of the user at or after the anchor in the listing's
-- order (the anchor itself on the anchor's shard).  It lists what
-- follows that session, which is exactly what follows the anchor; with no
-- such session, the whole shard follows the anchor.
CREATE FUNCTION fleetlm._list_sessions_page(
    user_id     text,
    max_count   integer,
    anchor_at   timestamptz,
    anchor_id   text)
RETURNS SETOF fleetlm.session_info
AS $$
    CLUSTER 'fleetlm_cluster';
    RUN ON ALL;
    SELECT l.session_id, l.user_id, l.agent_id, l.metadata, l.created_at, l.last_seq
      FROM fleetlm.list_sessions($1::text, $2::integer,
               (SELECT a.session_id
                  FROM fleetlm.sessions a
                 WHERE a.user_id = $1::text
                   AND (a.created_at, a.session_id) >= ($3::timestamptz, $4::text)
                 ORDER BY a.created_at, a.session_id
                 LIMIT 1)) l;
$$ LANGUAGE plproxy ROWS 100;

CREATE FUNCTION fleetlm.list_sessions(
    user_id     text,
    max_count   integer DEFAULT 100,
    before_id   text    DEFAULT NULL)
RETURNS SETOF fleetlm.session_info
LANGUAGE plpgsql VOLATILE ROWS 100
AS $$
DECLARE
    anchor_at timestamptz;
BEGIN
    IF before_id IS NOT NULL THEN
        anchor_at := fleetlm._list_sessions_anchor(user_id, max_count, before_id);
        IF anchor_at IS NULL THEN
            -- deleted between the shard's check and the read
            RAISE EXCEPTION 'before_id: fleetlm session "%" does not exist', before_id
                USING ERRCODE = 'no_data_found';
        END IF;
    END IF;
    FOR attempt IN 1 .. 3 LOOP
        BEGIN
            -- the sort reads every row before it returns one: an error
            -- leaves no row behind
            RETURN QUERY
                SELECT l.session_id, l.user_id, l.agent_id, l.metadata, l.created_at, l.last_seq
                  FROM (SELECT DISTINCT ON (p.session_id) p.*
                          FROM fleetlm._list_sessions_page(user_id, max_count, anchor_at, before_id) p
                         ORDER BY p.session_id) l
                 ORDER BY l.created_at DESC, l.session_id DESC
                 LIMIT CASE WHEN max_count > 0 THEN max_count END;
            RETURN;
        EXCEPTION WHEN no_data_found THEN
            -- the only no_data_found here: a shard's local anchor, removed
            -- by the applier (a deleted session) between the shard's read
            -- of it and list_sessions' check; the next attempt finds another
            IF before_id IS NULL OR attempt = 3 THEN
                RAISE;
            END IF;
        END;
    END LOOP;
END
$$;

-- Every shard's inbox, with each session's created_at: the activity that
-- orders the inbox is the last message's time, or created_at for a
-- session without messages.
CREATE FUNCTION fleetlm._inbox_all(
    user_id     text,
    max_count   integer,
    OUT session_id      text,
    OUT agent_id        text,
    OUT last_seq        bigint,
    OUT last_message_at timestamptz,
    OUT last_sender_id  text,
    OUT last_read_seq   bigint,
    OUT unread_count    bigint,
    OUT created_at      timestamptz)
RETURNS SETOF record
AS $$
    CLUSTER 'fleetlm_cluster';
    RUN ON ALL;
    SELECT i.session_id, i.agent_id, i.last_seq, i.last_message_at, i.last_sender_id,
           i.last_read_seq, i.unread_count, s.created_at
      FROM fleetlm.inbox($1::text, $2::integer) i
      LEFT JOIN fleetlm.sessions s ON s.session_id = i.session_id;
$$ LANGUAGE plproxy ROWS 100;

-- most recent activity first, then session id descending in byte order
-- (fleetlm sorts the inbox with strcmp, whatever the collation)
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
LANGUAGE sql VOLATILE ROWS 100
BEGIN ATOMIC
    SELECT i.session_id, i.agent_id, i.last_seq, i.last_message_at, i.last_sender_id,
           i.last_read_seq, i.unread_count
      FROM (SELECT DISTINCT ON (a.session_id) a.*
              FROM fleetlm._inbox_all(user_id, max_count) a
             ORDER BY a.session_id) i
     ORDER BY COALESCE(i.last_message_at, i.created_at) DESC NULLS LAST,
              i.session_id COLLATE "C" DESC
     LIMIT CASE WHEN max_count OPERATOR(pg_catalog.>) 0 THEN max_count END;
END;

-------------------------------------------------------------------------
-- Every shard: flush, stats, the agent registry and the dispatchers'
-- turns.  PL/Proxy requires RUN ON ALL functions to return sets; the
-- functions with fleetlm's result types wrap them.  A shard that fails
-- fails the call as a whole (a shard reached before it may have done its
-- part: flush, register_agent and set_agent_status can be repeated).
-------------------------------------------------------------------------

CREATE FUNCTION fleetlm._flush_all()
RETURNS SETOF integer
AS $$
    CLUSTER 'fleetlm_cluster';
    RUN ON ALL;
    SELECT 1 AS done FROM fleetlm.flush();
$$ LANGUAGE plproxy;

CREATE FUNCTION fleetlm.flush()
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM pg_catalog.count(*) FROM fleetlm._flush_all();
END
$$;

-- fleetlm.stats() of the shards whose lowest partition is in partitions
-- (SPLIT sends each partition its own element, in parallel), with that
-- partition number.
CREATE FUNCTION fleetlm._shard_stats(
    partitions integer[],
    OUT partition           integer,
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
RETURNS SETOF record
AS $$
    CLUSTER 'fleetlm_cluster';
    SPLIT partitions;
    RUN ON partitions;
    SELECT ($1::integer[])[1] AS partition, s.* FROM fleetlm.stats() s;
$$ LANGUAGE plproxy;

-- One row per server of the cluster (see _shards): its number, its
-- partitions, and its fleetlm.stats().
CREATE FUNCTION fleetlm.shard_stats(
    OUT shard               integer,
    OUT partitions          integer[],
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
RETURNS SETOF record
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    firsts integer[];
BEGIN
    firsts := ARRAY(SELECT sh.first_partition FROM fleetlm._shards() sh ORDER BY sh.shard);
    IF pg_catalog.cardinality(firsts) = 0 THEN
        RAISE EXCEPTION 'the PL/Proxy cluster fleetlm_cluster has no partitions'
            USING ERRCODE = 'undefined_object',
                  HINT = 'CREATE SERVER fleetlm_cluster FOREIGN DATA WRAPPER plproxy OPTIONS (p0 ''...'', ...)';
    END IF;
    RETURN QUERY
        SELECT sh.shard, sh.partitions, st.state, st.inserted_lsn, st.written_lsn,
               st.durable_lsn, st.applied_lsn, st.appends, st.append_bytes, st.fsyncs,
               st.records_per_fsync, st.fsync_time_ms, st.applier_batches, st.applier_rows,
               st.applier_time_ms, st.applier_errors, st.ring_size, st.ring_used,
               st.ring_space_waits, st.active_sessions, st.recovery_records,
               st.recovery_time_ms, st.shmem_size, st.wal_directory, st.writer_error,
               st.writer_pid, st.applier_pid, st.dispatcher_pid, st.turns_started,
               st.turns_completed, st.turns_failed, st.attempts_retried,
               st.calls_in_flight, st.turns_tracked, st.http_time_ms
          FROM fleetlm._shard_stats(firsts) st
          JOIN fleetlm._shards() sh ON sh.first_partition = st.partition
         ORDER BY sh.shard;
END
$$;

-- The shards' stats in one row: counters, sizes, times and LSNs (bytes of
-- each shard's own log) are sums; records_per_fsync is all appends over
-- all fsyncs; state is the shards' common state, else each shard's
-- ("0: ready, 1: recovering"); wal_directory and writer_error list the
-- shards' ("<shard>: <value>", NULL when no shard has one); the pids are
-- NULL (each shard has its own: see shard_stats()).
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
LANGUAGE sql VOLATILE
BEGIN ATOMIC
    SELECT CASE WHEN pg_catalog.count(DISTINCT s.state) OPERATOR(pg_catalog.=) 1 THEN pg_catalog.min(s.state)
                ELSE pg_catalog.string_agg(s.shard::text OPERATOR(pg_catalog.||) ': ' OPERATOR(pg_catalog.||) s.state,
                                           ', ' ORDER BY s.shard) END,
           pg_catalog.sum(s.inserted_lsn)::bigint,
           pg_catalog.sum(s.written_lsn)::bigint,
           pg_catalog.sum(s.durable_lsn)::bigint,
           pg_catalog.sum(s.applied_lsn)::bigint,
           pg_catalog.sum(s.appends)::bigint,
           pg_catalog.sum(s.append_bytes)::bigint,
           pg_catalog.sum(s.fsyncs)::bigint,
           CASE WHEN pg_catalog.sum(s.fsyncs) OPERATOR(pg_catalog.>) 0
                THEN (pg_catalog.sum(s.appends) OPERATOR(pg_catalog./) pg_catalog.sum(s.fsyncs))::float8
                ELSE 0 END,
           pg_catalog.sum(s.fsync_time_ms),
           pg_catalog.sum(s.applier_batches)::bigint,
           pg_catalog.sum(s.applier_rows)::bigint,
           pg_catalog.sum(s.applier_time_ms),
           pg_catalog.sum(s.applier_errors)::bigint,
           pg_catalog.sum(s.ring_size)::bigint,
           pg_catalog.sum(s.ring_used)::bigint,
           pg_catalog.sum(s.ring_space_waits)::bigint,
           pg_catalog.sum(s.active_sessions)::bigint,
           pg_catalog.sum(s.recovery_records)::bigint,
           pg_catalog.sum(s.recovery_time_ms),
           pg_catalog.sum(s.shmem_size)::bigint,
           pg_catalog.string_agg(s.shard::text OPERATOR(pg_catalog.||) ': ' OPERATOR(pg_catalog.||) s.wal_directory,
                                 ', ' ORDER BY s.shard),
           pg_catalog.string_agg(s.shard::text OPERATOR(pg_catalog.||) ': ' OPERATOR(pg_catalog.||) s.writer_error,
                                 ', ' ORDER BY s.shard),
           NULL::integer,
           NULL::integer,
           NULL::integer,
           pg_catalog.sum(s.turns_started)::bigint,
           pg_catalog.sum(s.turns_completed)::bigint,
           pg_catalog.sum(s.turns_failed)::bigint,
           pg_catalog.sum(s.attempts_retried)::bigint,
           pg_catalog.sum(s.calls_in_flight)::integer,
           pg_catalog.sum(s.turns_tracked)::integer,
           pg_catalog.sum(s.http_time_ms)
      FROM fleetlm.shard_stats() s;
END;

CREATE VIEW fleetlm.stat AS SELECT * FROM fleetlm.stats();

-- The agent registry: every shard's dispatcher calls the agents of its own
-- sessions, so every shard gets the same registration.  register_agent
-- returns the row of the shard that registered last.
CREATE FUNCTION fleetlm._register_agent_all(
    agent_id        text,
    origin_url      text,
    webhook_path    text,
    protocol        text,
    history_mode    text,
    history_limit   integer,
    timeout_ms      integer,
    debounce_ms     integer,
    max_concurrency integer,
    max_attempts    integer,
    headers         jsonb,
    secret_headers  jsonb,
    name            text,
    model           text)
RETURNS SETOF fleetlm.agents
AS $$
    CLUSTER 'fleetlm_cluster';
    RUN ON ALL;
    TARGET fleetlm.register_agent;
$$ LANGUAGE plproxy;

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
LANGUAGE sql VOLATILE
BEGIN ATOMIC
    SELECT a.agent_id, a.name, a.origin_url, a.webhook_path, a.protocol, a.history_mode,
           a.history_limit, a.timeout_ms, a.debounce_ms, a.max_concurrency, a.max_attempts,
           a.headers, a.secret_headers, a.model, a.status, a.metadata, a.created_at,
           a.updated_at
      FROM fleetlm._register_agent_all(agent_id, origin_url, webhook_path, protocol,
                                       history_mode, history_limit, timeout_ms,
                                       debounce_ms, max_concurrency, max_attempts,
                                       headers, secret_headers, name, model) a
     ORDER BY a.updated_at DESC
     LIMIT 1;
END;

CREATE FUNCTION fleetlm._set_agent_status_all(agent_id text, status text)
RETURNS SETOF integer
AS $$
    CLUSTER 'fleetlm_cluster';
    RUN ON ALL;
    SELECT 1 AS done FROM fleetlm.set_agent_status($1::text, $2::text);
$$ LANGUAGE plproxy;

CREATE FUNCTION fleetlm.set_agent_status(agent_id text, status text)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM pg_catalog.count(*) FROM fleetlm._set_agent_status_all(agent_id, status);
END
$$;

-- every shard's dispatcher's turns
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
AS $$
    CLUSTER 'fleetlm_cluster';
    RUN ON ALL;
$$ LANGUAGE plproxy;

CREATE VIEW fleetlm.agent_turns AS SELECT * FROM fleetlm.agent_turns();

-- The reply parser reads no data: any shard computes it.
CREATE FUNCTION fleetlm.compact_agent_reply(
    body        text,
    protocol    text    DEFAULT 'fleetlm',
    max_line    integer DEFAULT 1048576,
    max_bytes   integer DEFAULT 16777216)
RETURNS TABLE(message jsonb, complete boolean, aborted boolean, error text,
              chunks integer)
AS $$
    CLUSTER 'fleetlm_cluster';
    RUN ON ANY;
$$ LANGUAGE plproxy ROWS 1;

-------------------------------------------------------------------------
-- Appends to many sessions in one call (fleetlm's append_many): the
-- elements are split by partition (PL/Proxy's SPLIT, on the partition
-- hashes computed here in one query: RUN ON a hash argument needs no call
-- per element).  PL/Proxy sends the elements of all partitions of one
-- server in one query (they share its connection), so each server appends
-- its share with one wait for durability; the servers run in parallel,
-- and the seqs come back in the order of the input.  A fenced partition
-- fails the whole call with 55P03 before anything is sent.  A call with
-- NULL arrays or arrays of different lengths is sent whole to one shard,
-- which rejects it with fleetlm's error.
-------------------------------------------------------------------------

CREATE FUNCTION fleetlm._append_many(
    hashes              integer[],
    ords                integer[],
    session_ids         text[],
    sender_ids          text[],
    kinds               text[],
    contents            jsonb[],
    metadata            jsonb[],
    idempotency_keys    text[],
    OUT ord integer,
    OUT seq bigint)
RETURNS SETOF record
AS $$
    CLUSTER 'fleetlm_cluster';
    SPLIT ALL;
    RUN ON hashes;
    SELECT ($2::integer[])[a.n] AS ord, a.s AS seq
      FROM fleetlm.append_many($3::text[], $4::text[], $5::text[], $6::jsonb[],
                               $7::jsonb[], $8::text[]) WITH ORDINALITY a(s, n);
$$ LANGUAGE plproxy ROWS 100;

CREATE FUNCTION fleetlm._append_many_any(
    session_ids         text[],
    sender_ids          text[],
    kinds               text[],
    contents            jsonb[],
    metadata            jsonb[],
    idempotency_keys    text[])
RETURNS SETOF bigint
AS $$
    CLUSTER 'fleetlm_cluster';
    RUN ON ANY;
    TARGET fleetlm.append_many;
$$ LANGUAGE plproxy;

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
    fenced  text;
BEGIN
    IF session_ids IS NULL OR sender_ids IS NULL OR kinds IS NULL OR contents IS NULL
       OR cardinality(sender_ids) <> n OR cardinality(kinds) <> n OR cardinality(contents) <> n
       OR cardinality(metadata) <> n OR cardinality(idempotency_keys) <> n THEN
        RETURN QUERY SELECT * FROM fleetlm._append_many_any(session_ids, sender_ids, kinds,
                                                            contents, metadata, idempotency_keys);
        RETURN;
    END IF;
    IF n = 0 THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM fleetlm.fences) THEN
        SELECT s.s INTO fenced
          FROM unnest(session_ids) s(s), fleetlm.fences f
         WHERE fleetlm.partition_of(s.s) % f.partitions = f.partition
         LIMIT 1;
        IF FOUND THEN
            PERFORM fleetlm._route(fenced);     -- its error
        END IF;
    END IF;
    RETURN QUERY
        SELECT a.seq
          FROM fleetlm._append_many(
                   ARRAY(SELECT fleetlm.partition_of(s.s)
                           FROM unnest(session_ids) WITH ORDINALITY s(s, i) ORDER BY s.i),
                   ARRAY(SELECT generate_series(1, n)), session_ids, sender_ids, kinds, contents,
                   COALESCE(metadata, array_fill(NULL::jsonb, ARRAY[n])),
                   COALESCE(idempotency_keys, array_fill(NULL::text, ARRAY[n]))) a
         ORDER BY a.ord;
END
$$;

-------------------------------------------------------------------------
-- Moving partitions (README.md, "Moving a partition").  A session is
-- moved with fleetlm's export_session and import_session: the same seqs,
-- idempotency keys, metadata, times, recipients and read cursors; a
-- deleted session is not exported.  The steps, each a function here:
--
--   fence_partition     fence the partition on this coordinator (its
--                       calls fail with 55P03) and drain: wait until no
--                       transaction that began before the fence is left
--   copy_partition      flush the old server, then copy each session of
--                       the partition to the new server
--   switch_partition    ALTER SERVER fleetlm_cluster: pN names the new one
--   cancel_fenced_waits cancel the long-polls that began before the fence
--                       (they wait on the old server)
--   remove_partition_copy  delete the partition's sessions from the old
--                       server
--   unfence_partition   lift the fence
--
-- move_partition runs them all, for a cluster with one coordinator.  The
-- old and new servers are reached through a second PL/Proxy cluster,
-- fleetlm_move (p0: the old server, p1: the new one), made here with the
-- user mappings of fleetlm_cluster.  Superusers only: nothing is granted.
-------------------------------------------------------------------------

-- The partition count; an error unless partition is one of the cluster's.
CREATE FUNCTION fleetlm._check_partition(partition integer)
RETURNS integer
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n   integer := fleetlm.partition_count();
BEGIN
    IF n IS NULL THEN
        RAISE EXCEPTION 'the PL/Proxy cluster fleetlm_cluster has no partitions'
            USING ERRCODE = 'undefined_object';
    END IF;
    IF partition IS NULL OR partition < 0 OR partition >= n THEN
        RAISE EXCEPTION 'partition must be between 0 and %: %', n - 1, COALESCE(partition::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN n;
END
$$;

-- The connection string of partition (option pN or partition_N).
CREATE FUNCTION fleetlm._partition_server(partition integer, OUT option_name text, OUT connstr text)
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT o.option_name, o.option_value
      FROM pg_catalog.pg_foreign_server s,
           pg_catalog.pg_options_to_table(s.srvoptions) o
     WHERE s.srvname OPERATOR(pg_catalog.=) 'fleetlm_cluster'
       AND o.option_name OPERATOR(pg_catalog.=) ANY (ARRAY['p' OPERATOR(pg_catalog.||) partition,
                                                         'partition_' OPERATOR(pg_catalog.||) partition]);
END;

-- The coordinator backends that may still send a call of a fenced
-- partition: those in a transaction that began before `since` (a
-- REPEATABLE READ snapshot taken then does not see the fence), except
-- long-polls, which write nothing.
CREATE FUNCTION fleetlm._undrained(since timestamptz)
RETURNS integer[]
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT COALESCE(pg_catalog.array_agg(a.pid ORDER BY a.pid), '{}')
      FROM pg_catalog.pg_stat_activity a
     WHERE a.backend_type OPERATOR(pg_catalog.=) 'client backend'
       AND a.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()
       AND a.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()
       AND a.xact_start OPERATOR(pg_catalog.<) since
       AND NOT (a.state OPERATOR(pg_catalog.=) 'active'
                AND a.query OPERATOR(pg_catalog.~) 'fleetlm\.wait_for_(messages|stream)');
END;

-- Fence a partition on this coordinator, then drain: wait (at most
-- drain_timeout) until no backend here can still send it a call.  Commits
-- the fence first, so CALL it outside a transaction block.  On a drain
-- timeout the fence stays and the error (55006) names the backends; CALL
-- it again, or unfence.  Fencing a fenced partition drains again.
CREATE PROCEDURE fleetlm.fence_partition(
    partition       integer,
    drain_timeout   interval DEFAULT '30s')
LANGUAGE plpgsql
AS $$
DECLARE
    n           integer := fleetlm._check_partition(partition);
    since       timestamptz;
    pids        integer[];
BEGIN
    IF drain_timeout IS NULL OR drain_timeout < '0' THEN
        RAISE EXCEPTION 'drain_timeout must not be NULL or negative: %', COALESCE(drain_timeout::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO fleetlm.fences (partition, partitions) VALUES (partition, n)
        ON CONFLICT DO NOTHING;
    COMMIT;
    -- a transaction that begins from now on sees the fence
    since := clock_timestamp();
    UPDATE fleetlm.fences f SET fenced_at = since WHERE f.partition = fence_partition.partition;
    COMMIT;
    LOOP
        PERFORM pg_stat_clear_snapshot();   -- pg_stat_activity anew
        pids := fleetlm._undrained(since);
        EXIT WHEN cardinality(pids) = 0;
        IF clock_timestamp() >= since + drain_timeout THEN
            RAISE EXCEPTION 'fleetlm partition % is fenced but not drained after %', partition, drain_timeout
                USING ERRCODE = 'object_in_use',
                      DETAIL = format('Backends %s are in transactions that began before the fence.', pids),
                      HINT = 'End them and CALL fleetlm.fence_partition again, or lift the fence with fleetlm.unfence_partition.';
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
END
$$;

-- An error unless partition is fenced on this coordinator: the steps of a
-- move that change data or routing run only under the fence.
CREATE FUNCTION fleetlm._require_fence(partition integer)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM fleetlm.fences f WHERE f.partition = _require_fence.partition) THEN
        RAISE EXCEPTION 'fleetlm partition % is not fenced', partition
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'CALL fleetlm.fence_partition first (on every coordinator).';
    END IF;
END
$$;

-- Lift the fence; false if there was none.
CREATE FUNCTION fleetlm.unfence_partition(partition integer)
RETURNS boolean
LANGUAGE sql VOLATILE
BEGIN ATOMIC
    WITH d AS (DELETE FROM fleetlm.fences f
                WHERE f.partition OPERATOR(pg_catalog.=) unfence_partition.partition
               RETURNING 1)
    SELECT pg_catalog.count(*) OPERATOR(pg_catalog.>) 0 FROM d;
END;

-- Point fleetlm_move at the two servers of a move (p0 source, p1 target),
-- creating it with fleetlm_cluster's user mappings the first time.
CREATE FUNCTION fleetlm._move_servers(source text, target text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    m   record;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_foreign_server WHERE srvname = 'fleetlm_move') THEN
        EXECUTE format('ALTER SERVER fleetlm_move OPTIONS (SET p0 %L, SET p1 %L)', source, target);
        RETURN;
    END IF;
    EXECUTE format('CREATE SERVER fleetlm_move FOREIGN DATA WRAPPER plproxy OPTIONS (p0 %L, p1 %L)',
                   source, target);
    FOR m IN SELECT CASE WHEN u.umuser = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END AS who,
                    (SELECT string_agg(format('%I %L', split_part(o, '=', 1),
                                              substr(o, strpos(o, '=') + 1)), ', ')
                       FROM unnest(u.umoptions) o) AS opts
               FROM pg_user_mapping u
               JOIN pg_foreign_server s ON s.oid = u.umserver
               LEFT JOIN pg_roles r ON r.oid = u.umuser
              WHERE s.srvname = 'fleetlm_cluster' LOOP
        EXECUTE format('CREATE USER MAPPING FOR %s SERVER fleetlm_move%s', m.who,
                       CASE WHEN m.opts IS NULL THEN '' ELSE ' OPTIONS (' || m.opts || ')' END);
    END LOOP;
END
$$;

-- Calls on one server of fleetlm_move: side 0 the old server, 1 the new.
CREATE FUNCTION fleetlm._move_sessions(side integer)
RETURNS SETOF text
AS $$
    CLUSTER 'fleetlm_move';
    RUN ON side;
    SELECT s.session_id FROM fleetlm.sessions s;
$$ LANGUAGE plproxy;

CREATE FUNCTION fleetlm._move_flush(side integer)
RETURNS integer
AS $$
    CLUSTER 'fleetlm_move';
    RUN ON side;
    SELECT 1 FROM fleetlm.flush();
$$ LANGUAGE plproxy;

CREATE FUNCTION fleetlm._move_export(side integer, session_id text, flush boolean)
RETURNS jsonb
AS $$
    CLUSTER 'fleetlm_move';
    RUN ON side;
    SELECT fleetlm.export_session($2::text, $3::boolean);
$$ LANGUAGE plproxy;

CREATE FUNCTION fleetlm._move_import(side integer, session jsonb)
RETURNS bigint
AS $$
    CLUSTER 'fleetlm_move';
    RUN ON side;
    SELECT fleetlm.import_session($2::jsonb);
$$ LANGUAGE plproxy;

CREATE FUNCTION fleetlm._move_delete(side integer, session_ids text[])
RETURNS bigint
AS $$
    CLUSTER 'fleetlm_move';
    RUN ON side;
    SELECT pg_catalog.count(*) FILTER (WHERE d.d)
      FROM pg_catalog.unnest($2::text[]) s(id), LATERAL fleetlm.delete_session(s.id) d(d);
$$ LANGUAGE plproxy;

-- The sessions of partition on one server of fleetlm_move.
CREATE FUNCTION fleetlm._move_partition_sessions(side integer, partition integer, partitions integer)
RETURNS SETOF text
LANGUAGE sql VOLATILE
BEGIN ATOMIC
    SELECT s.s FROM fleetlm._move_sessions(side) s(s)
     WHERE fleetlm.partition_of(s.s) OPERATOR(pg_catalog.%) partitions OPERATOR(pg_catalog.=) partition
     ORDER BY 1;
END;

-- Copy every session of a fenced partition from the server it is on now
-- to target; returns the number of sessions copied.  The old server is
-- flushed first, so that every acknowledged message is in its tables.  A
-- session with an agent turn pending or running is retried (flushing
-- again) for at most turn_timeout.  A session already on target with
-- identical contents (an earlier, interrupted copy) is skipped; with other
-- contents it is an error (23505).
CREATE FUNCTION fleetlm.copy_partition(
    partition       integer,
    target          text,
    turn_timeout    interval DEFAULT '30s')
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n           integer := fleetlm._check_partition(partition);
    source      text := (fleetlm._partition_server(partition)).connstr;
    deadline    timestamptz := clock_timestamp() + turn_timeout;
    id          text;
    doc         jsonb;
    refresh     boolean;
    copied      bigint := 0;
BEGIN
    PERFORM fleetlm._require_fence(partition);
    IF target IS NULL OR target = source THEN
        RAISE EXCEPTION 'target must be another server than partition %''s: %', partition, COALESCE(target, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM fleetlm._move_servers(source, target);
    PERFORM fleetlm._move_flush(0);
    FOR id IN SELECT s FROM fleetlm._move_partition_sessions(0, partition, n) s LOOP
        refresh := false;
        LOOP
            BEGIN
                doc := fleetlm._move_export(0, id, refresh);
                EXIT;
            EXCEPTION
                WHEN object_in_use THEN
                    IF clock_timestamp() >= deadline THEN
                        RAISE;
                    END IF;
                    PERFORM pg_sleep(0.1);
                    refresh := true;
                WHEN no_data_found THEN
                    doc := NULL;    -- deleted before the fence
                    EXIT;
            END;
        END LOOP;
        CONTINUE WHEN doc IS NULL;
        BEGIN
            PERFORM fleetlm._move_import(1, doc);
        EXCEPTION WHEN unique_violation THEN
            IF fleetlm._move_export(1, id, false) IS DISTINCT FROM doc THEN
                RAISE EXCEPTION 'fleetlm session "%" is already on the target server, with other contents', id
                    USING ERRCODE = 'unique_violation',
                          HINT = 'Remove it there (fleetlm.remove_partition_copy) and copy again.';
            END IF;
        END;
        copied := copied + 1;
    END LOOP;
    RETURN copied;
END
$$;

-- Point the partition at target in fleetlm_cluster; returns the old
-- connection string.  PL/Proxy takes the change at the next call of every
-- backend of this coordinator.
CREATE FUNCTION fleetlm.switch_partition(partition integer, target text)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n       integer := fleetlm._check_partition(partition);
    old     record := fleetlm._partition_server(partition);
BEGIN
    PERFORM fleetlm._require_fence(partition);
    IF target IS NULL OR target = '' THEN
        RAISE EXCEPTION 'target must not be NULL or empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    EXECUTE format('ALTER SERVER fleetlm_cluster OPTIONS (SET %I %L)', old.option_name, target);
    RETURN old.connstr;
END
$$;

-- Cancel this coordinator's long-polls that began before the fence of
-- partition: they wait on the old server, where nothing will wake them.
-- Their clients get 57014 and poll again.  Returns how many.
CREATE FUNCTION fleetlm.cancel_fenced_waits(partition integer)
RETURNS integer
LANGUAGE sql VOLATILE
BEGIN ATOMIC
    SELECT pg_catalog.count(*) FILTER (WHERE pg_catalog.pg_cancel_backend(a.pid))::integer
      FROM pg_catalog.pg_stat_activity a, fleetlm.fences f
     WHERE f.partition OPERATOR(pg_catalog.=) cancel_fenced_waits.partition
       AND a.backend_type OPERATOR(pg_catalog.=) 'client backend'
       AND a.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()
       AND a.state OPERATOR(pg_catalog.=) 'active'
       AND a.query OPERATOR(pg_catalog.~) 'fleetlm\.wait_for_(messages|stream)'
       AND a.query_start OPERATOR(pg_catalog.<) f.fenced_at;
END;

-- Delete the sessions of a fenced partition from server, a server that no
-- longer holds the partition (the old one after the switch); returns how
-- many.  Refused for the partition's current server, and if a session to
-- delete is not on the partition's current server (not copied).
CREATE FUNCTION fleetlm.remove_partition_copy(partition integer, server text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n           integer := fleetlm._check_partition(partition);
    current     text := (fleetlm._partition_server(partition)).connstr;
    copies      text[];
    missing     bigint;
    example     text;
BEGIN
    IF server IS NULL OR server = current THEN
        RAISE EXCEPTION 'server % holds partition %: its sessions are not a copy', COALESCE(server, 'NULL'), partition
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Name the server the partition was moved away from.';
    END IF;
    PERFORM fleetlm._require_fence(partition);
    PERFORM fleetlm._move_servers(server, current);
    copies := ARRAY(SELECT fleetlm._move_partition_sessions(0, partition, n));
    SELECT count(*), min(c) INTO missing, example
      FROM unnest(copies) c
     WHERE c NOT IN (SELECT fleetlm._move_partition_sessions(1, partition, n));
    IF missing > 0 THEN
        RAISE EXCEPTION '% sessions of partition % on server % are not on the partition''s server, e.g. "%"',
                missing, partition, server, example
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('Partition %s is on %s.', partition, current),
                  HINT = 'Copy the partition (fleetlm.copy_partition) before removing the old copies.';
    END IF;
    RETURN fleetlm._move_delete(0, copies);
END
$$;

-- The whole move, for a cluster with one coordinator: fence and drain,
-- copy, switch, cancel the old long-polls, remove the old copies,
-- unfence.  Commits after each step, so CALL it outside a transaction
-- block.  If it fails, the partition stays fenced and the error says
-- where; CALL it again with the same arguments to go on (every step may
-- be repeated), or see README.md to give up.
CREATE PROCEDURE fleetlm.move_partition(
    partition       integer,
    target          text,
    drain_timeout   interval DEFAULT '30s')
LANGUAGE plpgsql
AS $$
DECLARE
    old_server  text;
BEGIN
    PERFORM fleetlm._check_partition(partition);
    CALL fleetlm.fence_partition(partition, drain_timeout);
    old_server := (fleetlm._partition_server(partition)).connstr;
    IF old_server IS DISTINCT FROM target THEN
        UPDATE fleetlm.fences f SET source = old_server, target = move_partition.target
         WHERE f.partition = move_partition.partition;
        COMMIT;
        PERFORM fleetlm.copy_partition(partition, target);
        PERFORM fleetlm.switch_partition(partition, target);
        COMMIT;
    ELSE
        -- switched by an earlier call: the old server is in the fence
        old_server := (SELECT f.source FROM fleetlm.fences f WHERE f.partition = move_partition.partition);
    END IF;
    PERFORM fleetlm.cancel_fenced_waits(partition);
    IF old_server IS NOT NULL AND old_server IS DISTINCT FROM target THEN
        PERFORM fleetlm.remove_partition_copy(partition, old_server);
    END IF;
    PERFORM fleetlm.unfence_partition(partition);
    COMMIT;
END
$$;

-------------------------------------------------------------------------
-- Moving sessions by hand (fleetlm's export_session / import_session) on
-- the session's partition.  Not fenced: an administrator may export from
-- a fenced partition.
-------------------------------------------------------------------------

CREATE FUNCTION fleetlm.export_session(
    session_id  text,
    flush       boolean DEFAULT true)
RETURNS jsonb
AS $$
    CLUSTER 'fleetlm_cluster';
    RUN ON fleetlm.partition_of(session_id);
$$ LANGUAGE plproxy;

-- the partition hash of the session of an export document
CREATE FUNCTION fleetlm._document_hash(session jsonb)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN fleetlm.partition_of(session OPERATOR(pg_catalog.->) 'session' OPERATOR(pg_catalog.->>) 'session_id');

CREATE FUNCTION fleetlm.import_session(session jsonb)
RETURNS bigint
AS $$
    CLUSTER 'fleetlm_cluster';
    RUN ON fleetlm._document_hash(session);
$$ LANGUAGE plproxy;

-------------------------------------------------------------------------
-- Privileges, as fleetlm grants them: nothing for PUBLIC; fleetlm_reader
-- reads, fleetlm_writer (a member of fleetlm_reader) also writes,
-- fleetlm_admin manages agents.  The internal functions (_*) that a
-- function calls are granted with it: the calls run as the caller, whose
-- user mapping PL/Proxy uses to connect to the shards.  PL/Proxy also
-- requires USAGE on the foreign server fleetlm_cluster, granted when the
-- server is created (see README.md).
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
REVOKE ALL ON ALL PROCEDURES IN SCHEMA fleetlm FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA fleetlm FROM PUBLIC;
GRANT USAGE ON SCHEMA fleetlm TO fleetlm_reader;

GRANT EXECUTE ON FUNCTION
    fleetlm.messages(text, bigint, integer),
    fleetlm.last_seq(text),
    fleetlm.get_session(text),
    fleetlm.list_sessions(text, integer, text),
    fleetlm._list_sessions_anchor(text, integer, text),
    fleetlm._list_sessions_page(text, integer, timestamptz, text),
    fleetlm.inbox(text, integer),
    fleetlm._inbox_all(text, integer),
    fleetlm.wait_for_messages(text, bigint, interval, integer),
    fleetlm.wait_for_stream(text, bigint, integer, interval),
    fleetlm.stats(),
    fleetlm.shard_stats(),
    fleetlm._shard_stats(integer[]),
    fleetlm._shards(),
    fleetlm.partition_of(text),
    fleetlm._route(text),
    fleetlm.partition_count(),
    fleetlm.session_partition(text),
    fleetlm.compact_agent_reply(text, text, integer, integer)
TO fleetlm_reader;
GRANT SELECT ON fleetlm.stat, fleetlm.fences TO fleetlm_reader;

GRANT EXECUTE ON FUNCTION
    fleetlm.create_session(text, text, jsonb, text),
    fleetlm._create_session(text, text, jsonb, text),
    fleetlm.new_session_id(),
    fleetlm.append(text, text, text, jsonb, jsonb, text),
    fleetlm.append_batch(text, text, jsonb),
    fleetlm.delete_session(text),
    fleetlm.mark_read(text, text, bigint),
    fleetlm.append_many(text[], text[], text[], jsonb[], jsonb[], text[]),
    fleetlm._append_many(integer[], integer[], text[], text[], text[], jsonb[], jsonb[], text[]),
    fleetlm._append_many_any(text[], text[], text[], jsonb[], jsonb[], text[]),
    fleetlm.flush(),
    fleetlm._flush_all()
TO fleetlm_writer;

GRANT USAGE ON SCHEMA fleetlm TO fleetlm_admin;
GRANT EXECUTE ON FUNCTION
    fleetlm.register_agent(text, text, text, text, text, integer, integer,
                           integer, integer, integer, jsonb, jsonb, text, text),
    fleetlm._register_agent_all(text, text, text, text, text, integer, integer,
                                integer, integer, integer, jsonb, jsonb, text, text),
    fleetlm.set_agent_status(text, text),
    fleetlm._set_agent_status_all(text, text),
    fleetlm.agent_turns(),
    fleetlm.export_session(text, boolean),
    fleetlm.import_session(jsonb),
    fleetlm._document_hash(jsonb)
TO fleetlm_admin;
GRANT SELECT ON fleetlm.agent_turns TO fleetlm_admin;

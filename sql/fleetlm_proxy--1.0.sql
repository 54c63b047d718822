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
    RUN ON fleetlm.partition_of(session_id);
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
    RUN ON fleetlm.partition_of(session_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION fleetlm.append_batch(
    session_id  text,
    sender_id   text,
    messages    jsonb)
RETURNS SETOF bigint
AS $$
    CLUSTER 'fleetlm_cluster';
    RUN ON fleetlm.partition_of(session_id);
$$ LANGUAGE plproxy ROWS 10;

CREATE FUNCTION fleetlm.delete_session(session_id text)
RETURNS boolean
AS $$
    CLUSTER 'fleetlm_cluster';
    RUN ON fleetlm.partition_of(session_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION fleetlm.get_session(session_id text)
RETURNS fleetlm.session_info
AS $$
    CLUSTER 'fleetlm_cluster';
    RUN ON fleetlm.partition_of(session_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION fleetlm.mark_read(
    session_id      text,
    participant_id  text,
    last_seq        bigint)
RETURNS bigint
AS $$
    CLUSTER 'fleetlm_cluster';
    RUN ON fleetlm.partition_of(session_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION fleetlm.wait_for_messages(
    session_id  text,
    after_seq   bigint,
    timeout     interval DEFAULT '30s',
    max_count   integer  DEFAULT 100)
RETURNS SETOF fleetlm.messages
AS $$
    CLUSTER 'fleetlm_cluster';
    RUN ON fleetlm.partition_of(session_id);
$$ LANGUAGE plproxy ROWS 100;

CREATE FUNCTION fleetlm.messages(
    session_id  text,
    after_seq   bigint  DEFAULT 0,
    max_count   integer DEFAULT 100)
RETURNS SETOF fleetlm.messages
AS $$
    CLUSTER 'fleetlm_cluster';
    RUN ON fleetlm.partition_of(session_id);
$$ LANGUAGE plproxy ROWS 100;

CREATE FUNCTION fleetlm.last_seq(session_id text)
RETURNS bigint
AS $$
    CLUSTER 'fleetlm_cluster';
    RUN ON fleetlm.partition_of(session_id);
$$ LANGUAGE plproxy;

CREATE FUNCTION fleetlm.wait_for_stream(
    session_id  text,
    turn        bigint,
    after_chunk integer  DEFAULT 0,
    timeout     interval DEFAULT '30s')
RETURNS TABLE(turn bigint, attempt integer, chunk_no integer, chunk jsonb, done boolean)
AS $$
    CLUSTER 'fleetlm_cluster';
    RUN ON fleetlm.partition_of(session_id);
$$ LANGUAGE plproxy;

-------------------------------------------------------------------------
-- Listings: every shard lists its part, the coordinator merges in the
-- order of one server (src/api.c) and cuts at max_count.  The LIMIT is
-- NULL (none) when max_count is out of range, so that the shards, not the
-- coordinator, reject it with fleetlm's error.
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
    RUN ON fleetlm.partition_of(before_id);
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
                  FROM fleetlm._list_sessions_page(user_id, max_count, anchor_at, before_id) l
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
      FROM fleetlm._inbox_all(user_id, max_count) i
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
    fleetlm.partition_count(),
    fleetlm.session_partition(text),
    fleetlm.compact_agent_reply(text, text, integer, integer)
TO fleetlm_reader;
GRANT SELECT ON fleetlm.stat TO fleetlm_reader;

GRANT EXECUTE ON FUNCTION
    fleetlm.create_session(text, text, jsonb, text),
    fleetlm._create_session(text, text, jsonb, text),
    fleetlm.new_session_id(),
    fleetlm.append(text, text, text, jsonb, jsonb, text),
    fleetlm.append_batch(text, text, jsonb),
    fleetlm.delete_session(text),
    fleetlm.mark_read(text, text, bigint),
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
    fleetlm.agent_turns()
TO fleetlm_admin;
GRANT SELECT ON fleetlm.agent_turns TO fleetlm_admin;

/*-------------------------------------------------------------------------
 *
 * api.c
 *	  The conversation API around the log: create_session, get_session,
 *	  list_sessions, mark_read, inbox and wait_for_messages.
 *
 * create_session is an ordinary transactional insert into
 * fleetlm.sessions.  An id whose deletion went through the log but is not
 * applied yet still has its row there, so creating a session under it
 * first waits for the applier.
 *
 * Session listings read fleetlm.sessions (and the newest applied message
 * of each session) on a fresh snapshot, then overlay what only the session
 * table knows yet: durable messages the applier has not moved, and
 * deletions it has not carried out.  An eviction racing with the table
 * read could hide messages from both, so such reads retry when one
 * happened (session_eviction_mark, see session.h).
 *
 * wait_for_messages registers as a long-poller of its session
 * (longpoll.c) and sleeps on its latch; the flush round that makes a
 * record of that session durable wakes it, and no round of another
 * session does.  A wake-up costs a look at the session table; the tables
 * are read only when that says there is something new.
 *
 * src/api.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "common/int.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/jsonb.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "append.h"
#include "applywait.h"
#include "args.h"
#include "fleetlm.h"
#include "longpoll.h"
#include "read.h"
#include "replica.h"
#include "session.h"
#include "shmem.h"
#include "spi_util.h"
#include "ulid.h"
#include "walwriter.h"

PG_FUNCTION_INFO_V1(fleetlm_create_session);
PG_FUNCTION_INFO_V1(fleetlm_get_session);
PG_FUNCTION_INFO_V1(fleetlm_list_sessions);
PG_FUNCTION_INFO_V1(fleetlm_mark_read);
PG_FUNCTION_INFO_V1(fleetlm_inbox);
PG_FUNCTION_INFO_V1(fleetlm_wait_for_messages);

#define API_MAX_COUNT		100000
#define API_MAX_WAIT_MS		(24 * 3600 * 1000L)
#define API_RETRIES			1000
#define API_SESSION_NATTS	6	/* columns of fleetlm.session_info */

/* One session as the listings see it, tables and session table combined */
typedef struct SessionRow
{
	char	   *session_id;
	char	   *user_id;
	char	   *agent_id;
	Datum		metadata;
	TimestampTz created_at;
	int64		last_seq;		/* 0: no message */
	bool		has_last;
	TimestampTz last_at;
	char	   *last_sender;
	bool		has_cursor;
	int64		last_read_seq;
	bool		deleted;		/* deletion pending: not listed */
} SessionRow;

/* Which sessions api_read_sessions reads */
typedef enum SessionQuery
{
	SQ_ONE,						/* $1 = session id */
	SQ_USER_PAGE,				/* $1 = user, $2 = before id, $3 = limit */
	SQ_USER_ALL					/* $1 = user, with the user's read cursor */
} SessionQuery;

static int	api_read_sessions(SessionQuery q, Datum *args, char *nulls,
							  SessionRow **rows);
static int	api_session_rows(SessionQuery q, Datum *args, char *nulls,
							 SessionRow **out);
static void api_check_count(int32 max_count);
static int	api_row_cmp_activity(const void *a, const void *b);
static TimestampTz api_activity(const SessionRow *r);
static void api_session_values(SessionRow *r, Datum *values, bool *nulls);
static Datum api_session_tuple(TupleDesc desc, SessionRow *r);
static void api_before_exists(const char *before_id);
static void api_wait_deletion(const char *session_id);

static void
api_check_count(int32 max_count)
{
	if (max_count <= 0 || max_count > API_MAX_COUNT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_count must be between 1 and %d: %d",
						API_MAX_COUNT, max_count)));
}

/*
 * Run one of the session queries on a fresh snapshot; rows in *rows.
 */
static int
api_read_sessions(SessionQuery q, Datum *args, char *nulls, SessionRow **rows)
{
	static SPIPlanPtr plans[3];
	static const char *const where[3] = {
		" WHERE s.session_id OPERATOR(pg_catalog.=) $1",
		" LEFT JOIN fleetlm.sessions b ON b.session_id OPERATOR(pg_catalog.=) $2"
		" WHERE s.user_id OPERATOR(pg_catalog.=) $1"
		"   AND ($2 IS NULL OR s.created_at OPERATOR(pg_catalog.<) b.created_at"
		"        OR (s.created_at OPERATOR(pg_catalog.=) b.created_at"
		"            AND s.session_id OPERATOR(pg_catalog.<) b.session_id))"
		" ORDER BY s.created_at DESC, s.session_id DESC LIMIT $3",
		" WHERE s.user_id OPERATOR(pg_catalog.=) $1"
	};
	static Oid	argtypes[3][3] = {
		{TEXTOID}, {TEXTOID, TEXTOID, INT8OID}, {TEXTOID}
	};
	static const int nargs[3] = {1, 3, 1};
	FleetSpiContext spi;
	MemoryContext cxt = CurrentMemoryContext;
	int			ret;
	int			n;

	fleet_spi_connect(&spi);
	if (plans[q] == NULL)
	{
		char	   *sql;

		sql = psprintf("SELECT s.session_id, s.user_id, s.agent_id, s.metadata, s.created_at,"
					   "       lm.seq, lm.inserted_at, lm.sender_id, c.last_read_seq"
					   " FROM fleetlm.sessions s"
					   " LEFT JOIN LATERAL (SELECT m.seq, m.inserted_at, m.sender_id"
					   "    FROM fleetlm.messages m"
					   "   WHERE m.session_id OPERATOR(pg_catalog.=) s.session_id"
					   "   ORDER BY m.seq DESC LIMIT 1) lm ON true"
					   " LEFT JOIN fleetlm.cursors c"
					   "   ON c.session_id OPERATOR(pg_catalog.=) s.session_id"
					   "  AND c.participant_id OPERATOR(pg_catalog.=) s.user_id"
					   "%s", where[q]);
		(void) fleet_spi_plan(&plans[q], sql, nargs[q], argtypes[q]);
	}
	ret = SPI_execute_snapshot(plans[q], args, nulls, GetLatestSnapshot(),
							   InvalidSnapshot, true, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "fleetlm: session read failed: %s", SPI_result_code_string(ret));

	n = (int) SPI_processed;
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);
		TupleDesc	desc = SPI_tuptable->tupdesc;

		*rows = palloc0(Max(n, 1) * sizeof(SessionRow));
		for (int i = 0; i < n; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			SessionRow *r = &(*rows)[i];
			bool		isnull;
			Datum		d;

			r->session_id = SPI_getvalue(tup, desc, 1);
			r->user_id = SPI_getvalue(tup, desc, 2);
			r->agent_id = SPI_getvalue(tup, desc, 3);
			d = SPI_getbinval(tup, desc, 4, &isnull);
			r->metadata = PointerGetDatum(DatumGetJsonbPCopy(d));
			r->created_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 5, &isnull));
			d = SPI_getbinval(tup, desc, 6, &isnull);
			r->has_last = !isnull;
			r->last_seq = isnull ? 0 : DatumGetInt64(d);
			if (r->has_last)
			{
				r->last_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 7, &isnull));
				r->last_sender = SPI_getvalue(tup, desc, 8);
			}
			d = SPI_getbinval(tup, desc, 9, &isnull);
			r->has_cursor = !isnull;
			r->last_read_seq = isnull ? 0 : DatumGetInt64(d);
		}
		MemoryContextSwitchTo(old);
	}
	fleet_spi_finish(&spi);
	return n;
}

/*
 * Sessions of a query, with the session table's newer knowledge laid over
 * the tables'.  Retries if an eviction raced with the read.
 */
static int
api_session_rows(SessionQuery q, Datum *args, char *nulls, SessionRow **out)
{
	for (int attempt = 0; attempt < API_RETRIES; attempt++)
	{
		uint64		mark;
		SessionRow *rows;
		int			n;

		CHECK_FOR_INTERRUPTS();
		mark = session_eviction_mark_all();
		n = api_read_sessions(q, args, nulls, &rows);
		for (int i = 0; i < n; i++)
		{
			SessionRow *r = &rows[i];
			SessionTail tail;

			if (!read_session_tail(r->session_id, &tail))
				continue;
			if (tail.deleted)
			{
				r->deleted = true;
				continue;
			}
			if (tail.in_ring && tail.last_seq > r->last_seq)
			{
				r->has_last = true;
				r->last_seq = tail.last_seq;
				r->last_at = tail.last_at;
				r->last_sender = tail.last_sender;
			}
			else if (tail.last_seq > r->last_seq)
			{
				/* applied after our snapshot: the table read is stale */
				n = -1;
				break;
			}
		}
		if (n < 0 || session_evicted_since_all(mark))
			continue;
		*out = rows;
		return n;
	}
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("fleetlm could not read a consistent view of the sessions after %d attempts",
					API_RETRIES),
			 errhint("The applier moved messages during every attempt; retry.")));
	return 0;					/* keep compiler quiet */
}

static TimestampTz
api_activity(const SessionRow *r)
{
	return r->has_last ? r->last_at : r->created_at;
}

/* newest activity first, then session id descending */
static int
api_row_cmp_activity(const void *a, const void *b)
{
	const SessionRow *ra = (const SessionRow *) a;
	const SessionRow *rb = (const SessionRow *) b;
	TimestampTz ta = api_activity(ra);
	TimestampTz tb = api_activity(rb);

	if (ta != tb)
		return ta > tb ? -1 : 1;
	return -strcmp(ra->session_id, rb->session_id);
}

/* The columns of a fleetlm.session_info row, none of them NULL */
static void
api_session_values(SessionRow *r, Datum *values, bool *nulls)
{
	memset(nulls, 0, API_SESSION_NATTS * sizeof(bool));
	values[0] = CStringGetTextDatum(r->session_id);
	values[1] = CStringGetTextDatum(r->user_id);
	values[2] = CStringGetTextDatum(r->agent_id);
	values[3] = r->metadata;
	values[4] = TimestampTzGetDatum(r->created_at);
	values[5] = Int64GetDatum(r->last_seq);
}

/* A fleetlm.session_info tuple */
static Datum
api_session_tuple(TupleDesc desc, SessionRow *r)
{
	Datum		values[API_SESSION_NATTS];
	bool		nulls[API_SESSION_NATTS];

	api_session_values(r, values, nulls);
	return HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
}

/*
 * If the id belongs to a deleted session whose deletion the applier has not
 * carried out yet, wait until it has: its row is still in the table.
 */
static void
api_wait_deletion(const char *session_id)
{
	uint32		hashcode;
	LWLock	   *plock;
	FleetSession *entry;
	uint64		tombstone = 0;

	if (fleet_shared == NULL ||
		pg_atomic_read_u32(&fleet_shared->state) != FLEET_STATE_READY)
		return;
	hashcode = session_hash_code(session_id);
	plock = session_partition_lock(hashcode);
	LWLockAcquire(plock, LW_SHARED);
	entry = session_find_live(session_id, hashcode);
	if (entry != NULL && entry->deleted)
		tombstone = entry->last_lsn;
	LWLockRelease(plock);
	if (tombstone != 0)
		applywait_applied(tombstone + 1, "the deletion of a session with this id");
}

/*
 * fleetlm.create_session(user_id, agent_id, metadata, session_id) -> text
 *
 * Transactional, unlike append: the session row is an ordinary insert.
 */
Datum
fleetlm_create_session(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	char	   *user_id = args_text(fcinfo, 0, "user_id");
	char	   *agent_id = args_text(fcinfo, 1, "agent_id");
	Jsonb	   *metadata = args_jsonb(fcinfo, 2, "metadata");
	char	   *session_id;
	char		ulid[ULID_LEN + 1];
	Oid			argtypes[4] = {TEXTOID, TEXTOID, TEXTOID, JSONBOID};
	Datum		values[4];
	FleetSpiContext spi;
	int			ret;

	fleetlm_require_primary("create_session");
	fleetlm_require_shmem();
	fleetlm_require_database();
	args_check_id(user_id, "user_id");
	args_check_id(agent_id, "agent_id");
	args_check_object(metadata, "metadata");
	session_id = args_text_or_null(fcinfo, 3);
	if (session_id == NULL)
	{
		ulid_generate(ulid);
		session_id = ulid;
	}
	else
	{
		args_check_id(session_id, "session_id");
		api_wait_deletion(session_id);
	}

	fleet_spi_connect(&spi);
	plan = fleet_spi_plan(&plan,
						  "INSERT INTO fleetlm.sessions (session_id, user_id, agent_id, metadata)"
						  " VALUES ($1, $2, $3, $4) ON CONFLICT (session_id) DO NOTHING",
						  4, argtypes);
	values[0] = CStringGetTextDatum(session_id);
	values[1] = CStringGetTextDatum(user_id);
	values[2] = CStringGetTextDatum(agent_id);
	values[3] = JsonbPGetDatum(metadata);
	ret = SPI_execute_plan(plan, values, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "fleetlm: insert into fleetlm.sessions failed: %s",
			 SPI_result_code_string(ret));
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("fleetlm session \"%s\" already exists", session_id)));
	fleet_spi_finish(&spi);

	PG_RETURN_TEXT_P(cstring_to_text(session_id));
}

/*
 * fleetlm.get_session(session_id) -> fleetlm.session_info
 */
Datum
fleetlm_get_session(PG_FUNCTION_ARGS)
{
	char	   *session_id = args_text(fcinfo, 0, "session_id");
	TupleDesc	desc;
	SessionRow *rows;
	Datum		args[1];
	int			n;

	args_check_id(session_id, "session_id");
	fleetlm_wait_ready();
	append_read_own_writes();
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	desc = BlessTupleDesc(desc);

	args[0] = CStringGetTextDatum(session_id);
	n = api_session_rows(SQ_ONE, args, NULL, &rows);
	if (n == 0)
		session_error_missing(session_id, false);
	if (rows[0].deleted)
		session_error_missing(session_id, true);
	PG_RETURN_DATUM(api_session_tuple(desc, &rows[0]));
}

/*
 * list_sessions' before_id must name an existing session: an error if not.
 */
static void
api_before_exists(const char *before_id)
{
	SessionRow *rows;
	Datum		args[1];

	args[0] = CStringGetTextDatum(before_id);
	if (api_read_sessions(SQ_ONE, args, NULL, &rows) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("before_id: fleetlm session \"%s\" does not exist", before_id)));
}

/*
 * fleetlm.list_sessions(user_id, max_count, before_id)
 *		-> SETOF fleetlm.session_info
 *
 * The user's sessions, newest first; pass the last session id of a page as
 * before_id to get the next page.
 */
Datum
fleetlm_list_sessions(PG_FUNCTION_ARGS)
{
	char	   *user_id = args_text(fcinfo, 0, "user_id");
	int32		max_count;
	char	   *before_id;
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SessionRow *rows;
	Datum		args[3];
	char		nulls[3] = {' ', ' ', ' '};
	int64		pending;
	int			n;
	int			emitted = 0;

	max_count = args_int32(fcinfo, 1, "max_count");
	args_check_id(user_id, "user_id");
	api_check_count(max_count);
	before_id = args_text_or_null(fcinfo, 2);
	if (before_id != NULL)
		args_check_id(before_id, "before_id");
	fleetlm_wait_ready();
	append_read_own_writes();
	if (before_id)
		api_before_exists(before_id);
	InitMaterializedSRF(fcinfo, 0);

	/* over-fetch by the deletions in flight, which are not listed */
	pending = (int64) (pg_atomic_read_u64(&fleet_shared->tombstones) -
					   pg_atomic_read_u64(&fleet_shared->tombstones_applied));
	args[0] = CStringGetTextDatum(user_id);
	if (before_id)
		args[1] = CStringGetTextDatum(before_id);
	else
	{
		args[1] = (Datum) 0;
		nulls[1] = 'n';
	}
	args[2] = Int64GetDatum((int64) max_count + Max(pending, 0));
	n = api_session_rows(SQ_USER_PAGE, args, nulls, &rows);

	for (int i = 0; i < n && emitted < max_count; i++)
	{
		Datum		values[API_SESSION_NATTS];
		bool		isnull[API_SESSION_NATTS];

		if (rows[i].deleted)
			continue;
		api_session_values(&rows[i], values, isnull);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, isnull);
		emitted++;
	}
	return (Datum) 0;
}

/*
 * fleetlm.inbox(user_id, max_count) -> one row per session of the user,
 * most recent activity first: last message (seq, time, sender), the user's
 * read cursor and the unread count.
 */
Datum
fleetlm_inbox(PG_FUNCTION_ARGS)
{
	char	   *user_id = args_text(fcinfo, 0, "user_id");
	int32		max_count;
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SessionRow *rows;
	Datum		args[1];
	int			n;
	int			emitted = 0;

	max_count = args_int32(fcinfo, 1, "max_count");
	args_check_id(user_id, "user_id");
	api_check_count(max_count);
	fleetlm_wait_ready();
	append_read_own_writes();
	InitMaterializedSRF(fcinfo, 0);

	args[0] = CStringGetTextDatum(user_id);
	n = api_session_rows(SQ_USER_ALL, args, NULL, &rows);
	if (n > 1)
		qsort(rows, n, sizeof(SessionRow), api_row_cmp_activity);

	for (int i = 0; i < n && emitted < max_count; i++)
	{
		SessionRow *r = &rows[i];
		Datum		values[7];
		bool		isnull[7] = {false, false, false, false, false, false, false};
		int64		read = r->has_cursor ? r->last_read_seq : 0;

		if (r->deleted)
			continue;
		values[0] = CStringGetTextDatum(r->session_id);
		values[1] = CStringGetTextDatum(r->agent_id);
		values[2] = Int64GetDatum(r->last_seq);
		if (r->has_last)
		{
			values[3] = TimestampTzGetDatum(r->last_at);
			values[4] = CStringGetTextDatum(r->last_sender);
		}
		else
			isnull[3] = isnull[4] = true;
		if (r->has_cursor)
			values[5] = Int64GetDatum(r->last_read_seq);
		else
			isnull[5] = true;
		values[6] = Int64GetDatum(Max(r->last_seq - read, 0));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, isnull);
		emitted++;
	}
	return (Datum) 0;
}

/*
 * fleetlm.mark_read(session_id, participant_id, last_seq) -> bigint
 *
 * Moves the participant's read cursor forward, never back; returns the
 * stored value.  A seq past the session's last durable seq is an error.
 */
Datum
fleetlm_mark_read(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	char	   *session_id = args_text(fcinfo, 0, "session_id");
	char	   *participant_id = args_text(fcinfo, 1, "participant_id");
	int64		seq;
	int64		last;
	int64		stored;
	Oid			argtypes[3] = {TEXTOID, TEXTOID, INT8OID};
	Datum		values[3];
	FleetSpiContext spi;
	bool		isnull;
	int			ret;

	seq = args_int64(fcinfo, 2, "last_seq");
	args_check_id(session_id, "session_id");
	args_check_id(participant_id, "participant_id");
	if (seq < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("last_seq must not be negative: " INT64_FORMAT, seq)));

	fleetlm_require_primary("mark_read");
	fleetlm_wait_ready();
	append_read_own_writes();
	last = read_last_seq(session_id);
	if (seq > last)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("last_seq " INT64_FORMAT " is beyond the last seq " INT64_FORMAT " of fleetlm session \"%s\"",
						seq, last, session_id)));

	fleet_spi_connect(&spi);
	plan = fleet_spi_plan(&plan,
						  "INSERT INTO fleetlm.cursors AS c (session_id, participant_id, last_read_seq)"
						  " VALUES ($1, $2, $3)"
						  " ON CONFLICT (session_id, participant_id) DO UPDATE"
						  "   SET last_read_seq = pg_catalog.int8larger(c.last_read_seq, excluded.last_read_seq),"
						  "       updated_at = pg_catalog.now()"
						  " RETURNING c.last_read_seq",
						  3, argtypes);
	values[0] = CStringGetTextDatum(session_id);
	values[1] = CStringGetTextDatum(participant_id);
	values[2] = Int64GetDatum(seq);
	ret = SPI_execute_plan(plan, values, NULL, false, 1);
	if (ret != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
		elog(ERROR, "fleetlm: could not store the read cursor: %s",
			 SPI_result_code_string(ret));
	stored = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 1, &isnull));
	fleet_spi_finish(&spi);
	PG_RETURN_INT64(stored);
}

/*
 * fleetlm.wait_for_messages(session_id, after_seq, timeout, max_count)
 *		-> SETOF fleetlm.messages
 *
 * Long-poll: returns the durable messages past after_seq as soon as there
 * is one, or no rows once the timeout has passed.  Cancellable.
 */
Datum
fleetlm_wait_for_messages(PG_FUNCTION_ARGS)
{
	char	   *session_id = args_text(fcinfo, 0, "session_id");
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		after_seq;
	int32		max_count;
	Interval   *timeout;
	int64		timeout_us;
	TimestampTz deadline;
	uint32		hashcode;
	LWLock	   *plock;

	after_seq = args_int64(fcinfo, 1, "after_seq");
	args_not_null(fcinfo, 2, "timeout");
	timeout = PG_GETARG_INTERVAL_P(2);
	max_count = args_int32(fcinfo, 3, "max_count");
	args_check_id(session_id, "session_id");
	read_check_range(after_seq, max_count);

	/* months and days as 30 and 24 hours, as interval comparison does */
	if (timeout->month < 0 || timeout->day < 0 || timeout->time < 0 ||
		timeout->month > 1 || timeout->day > 31 ||
		timeout->time > API_MAX_WAIT_MS * 1000)
		timeout_us = (timeout->month < 0 || timeout->day < 0 || timeout->time < 0) ? -1 : PG_INT64_MAX;
	else
		timeout_us = timeout->time +
			((int64) timeout->month * DAYS_PER_MONTH + timeout->day) * USECS_PER_DAY;
	if (timeout_us < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must not be negative: %s",
						DatumGetCString(DirectFunctionCall1(interval_out, PointerGetDatum(timeout))))));
	if (timeout_us > API_MAX_WAIT_MS * 1000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must be at most 1 day: %s",
						DatumGetCString(DirectFunctionCall1(interval_out, PointerGetDatum(timeout))))));

	fleetlm_wait_ready();
	append_read_own_writes();
	InitMaterializedSRF(fcinfo, 0);
	deadline = GetCurrentTimestamp() + timeout_us;
	hashcode = session_hash_code(session_id);
	plock = session_partition_lock(hashcode);

	/* from here on the round that makes a record of ours durable wakes us */
	longpoll_register(hashcode);
	PG_TRY();
	{
		for (;;)
		{
			uint64		mark = session_eviction_mark(hashcode);

			if (read_messages(session_id, after_seq, max_count,
							  rsinfo->setResult, rsinfo->setDesc) > 0)
				break;

			/* sleep until the session table says there is something new */
			for (;;)
			{
				FleetSession *entry;
				int64		last = -1;
				int64		inserted_last = -1;
				bool		deleted = false;
				long		left;

				LWLockAcquire(plock, LW_SHARED);
				entry = session_find_live(session_id, hashcode);
				if (entry != NULL)
				{
					deleted = entry->deleted;
					if (!deleted)
					{
						last = session_durable_last_seq(entry,
														fleet_read_pos(&fleet_shared->durable),
														fleet_read_pos(&fleet_shared->applied));
						inserted_last = entry->last_seq;
					}
				}
				LWLockRelease(plock);

				if (deleted)
					break;		/* read_messages reports it */
				if (last > after_seq)
					break;

				/*
				 * Messages we wait for are in the log, not durable yet (an
				 * answer the dispatcher appended without waiting, which
				 * woke us): lead the flush round ourselves, as an append
				 * does, rather than wait for the WAL writer's.  Bounded by
				 * our deadline, cancellable.
				 */
				if (inserted_last > after_seq)
				{
					if (!walwriter_flush_until(fleet_read_pos(&fleet_shared->inserted),
											   false, deadline))
						goto timed_out;
					continue;
				}
				if (entry == NULL && session_evicted_since(hashcode, mark))
					break;		/* the tables may know more now */

				left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
				if (left <= 0)
					goto timed_out;
				(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								 left, FLEETLM_WAIT_EVENT);
				ResetLatch(MyLatch);
				CHECK_FOR_INTERRUPTS();
			}
		}
timed_out:
		;
	}
	PG_CATCH();
	{
		longpoll_unregister();
		PG_RE_THROW();
	}
	PG_END_TRY();
	longpoll_unregister();
	return (Datum) 0;
}

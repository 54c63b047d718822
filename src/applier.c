/*-------------------------------------------------------------------------
 *
 * applier.c
 *	  The "fleetlm applier" background worker.
 *
 * At every start it connects to fleetlm.database and runs recovery
 * (recovery.c: replay the WAL segments past fleetlm.wal_state's applied
 * position, end the log, apply, set READY).  Then, every
 * fleetlm.flush_interval, it moves the durable records into fleetlm.messages:
 * one transaction holds one multi-row INSERT (a saved plan over unnest() of
 * arrays) and the update of fleetlm.wal_state.applied_lsn, committed with
 * synchronous_commit = on.  The position is stored with the rows, so each
 * record lands exactly once; `applied` is published, ring space released
 * and segments recycled only after that commit.
 *
 * A failing batch (a lock, a trigger, a full disk) is rolled back, logged,
 * and retried with exponential backoff; its records stay in the ring and
 * the WAL, appends go on until the ring is full and then wait.
 *
 * src/applier.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "portability/instr_time.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "applier.h"
#include "replica.h"
#include "fleetlm.h"
#include "pending.h"
#include "record.h"
#include "recovery.h"
#include "ring.h"
#include "segment.h"
#include "session.h"
#include "shmem.h"
#include "spi_util.h"
#include "walwriter.h"

#define APPLIER_MAX_BACKOFF_MS	10000
#define APPLIER_MAX_LOCK_BACKOFF_MS	1000
#define APPLIER_NCOLS			9

/* Rows of one INSERT, as the columns' datums */
typedef struct ApplyRows
{
	int			n;
	int			cap;
	Datum	   *cols[APPLIER_NCOLS];
	bool	   *nulls[APPLIER_NCOLS];
} ApplyRows;

static const Oid apply_col_types[APPLIER_NCOLS] = {
	TEXTOID,					/* session_id */
	INT8OID,					/* seq */
	TEXTOID,					/* sender_id */
	TEXTOID,					/* recipient_id */
	TEXTOID,					/* kind */
	JSONBOID,					/* content */
	JSONBOID,					/* metadata */
	TIMESTAMPTZOID,				/* inserted_at */
	TEXTOID						/* idempotency_key */
};

static MemoryContext applier_context = NULL;

/* table statistics of committed batches not yet reported */
static bool applier_stats_pending = false;
static MemoryContext batch_context = NULL;

static void applier_shutdown(int code, Datum arg);
static uint64 applier_apply_batch(uint64 from, uint64 target, uint64 *nrows);
static void applier_rows_add(ApplyRows *rows, FleetRecord *rec);
static void applier_rows_flush(ApplyRows *rows);
static void applier_delete_session(const char *session_id, int len);
static HTAB *applier_find_tombstones(uint64 from, uint64 target);
static void applier_publish(uint64 applied);
static void applier_set_options(void);
static void applier_report_error(ErrorData *edata, int backoff_ms);

/*
 * Register the worker; called from _PG_init.
 */
void
applier_register(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 1;
	strcpy(worker.bgw_library_name, "fleetlm");
	strcpy(worker.bgw_function_name, "applier_main");
	strcpy(worker.bgw_name, "fleetlm applier");
	strcpy(worker.bgw_type, "fleetlm applier");
	RegisterBackgroundWorker(&worker);
}

/*
 * Wake the applier early (a flush is requested, or the backlog is large).
 */
void
applier_wake(void)
{
	Latch	   *latch = fleet_shared->applier_latch;

	if (latch != NULL)
		SetLatch(latch);
}

static void
applier_shutdown(int code, Datum arg)
{
	fleet_shared->applier_latch = NULL;
	fleet_shared->applier_pid = 0;
}

/*
 * Publish a new life-cycle state and wake whoever waits for it (backends in
 * fleetlm_wait_ready, the WAL writer).  Used by recovery.
 */
void
applier_set_state(FleetState state)
{
	pg_atomic_write_u32(&fleet_shared->state, (uint32) state);
	ConditionVariableBroadcast(&fleet_shared->ready_cv);
	walwriter_wake();
}

static void
applier_rows_add(ApplyRows *rows, FleetRecord *rec)
{
	FleetRecordHeader *h = rec->hdr;
	int			i = rows->n;

	if (rows->n == rows->cap)
	{
		int			newcap = rows->cap == 0 ? 256 : rows->cap * 2;

		for (int c = 0; c < APPLIER_NCOLS; c++)
		{
			if (rows->cap == 0)
			{
				rows->cols[c] = palloc(newcap * sizeof(Datum));
				rows->nulls[c] = palloc(newcap * sizeof(bool));
			}
			else
			{
				rows->cols[c] = repalloc(rows->cols[c], newcap * sizeof(Datum));
				rows->nulls[c] = repalloc(rows->nulls[c], newcap * sizeof(bool));
			}
		}
		rows->cap = newcap;
	}
	for (int c = 0; c < APPLIER_NCOLS; c++)
		rows->nulls[c][i] = false;

	rows->cols[0][i] = PointerGetDatum(cstring_to_text_with_len(rec->session_id, h->session_len));
	rows->cols[1][i] = Int64GetDatum(h->seq);
	rows->cols[2][i] = PointerGetDatum(cstring_to_text_with_len(rec->sender_id, h->sender_len));
	if (h->recipient_len > 0)
		rows->cols[3][i] = PointerGetDatum(cstring_to_text_with_len(rec->recipient_id, h->recipient_len));
	else
		rows->nulls[3][i] = true;
	rows->cols[4][i] = PointerGetDatum(cstring_to_text_with_len(rec->kind, h->kind_len));
	rows->cols[5][i] = PointerGetDatum(rec->content);
	rows->cols[6][i] = PointerGetDatum(rec->metadata);
	rows->cols[7][i] = TimestampTzGetDatum(h->created_at);
	if (h->key_len > 0)
		rows->cols[8][i] = PointerGetDatum(cstring_to_text_with_len(rec->key, h->key_len));
	else
		rows->nulls[8][i] = true;
	rows->n++;
}

/*
 * Insert the accumulated rows with one statement.
 */
static void
applier_rows_flush(ApplyRows *rows)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[APPLIER_NCOLS];
	Datum		args[APPLIER_NCOLS];
	int			ret;

	if (rows->n == 0)
		return;
	for (int c = 0; c < APPLIER_NCOLS; c++)
	{
		int16		typlen;
		bool		typbyval;
		char		typalign;
		int			dims[1] = {rows->n};
		int			lbs[1] = {1};

		argtypes[c] = get_array_type(apply_col_types[c]);
		get_typlenbyvalalign(apply_col_types[c], &typlen, &typbyval, &typalign);
		args[c] = PointerGetDatum(construct_md_array(rows->cols[c], rows->nulls[c],
													 1, dims, lbs,
													 apply_col_types[c],
													 typlen, typbyval, typalign));
	}
	plan = fleet_spi_plan(&plan,
						  "INSERT INTO fleetlm.messages"
						  " (session_id, seq, sender_id, recipient_id, kind,"
						  "  content, metadata, inserted_at, idempotency_key)"
						  " SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2),"
						  "  pg_catalog.unnest($3), pg_catalog.unnest($4), pg_catalog.unnest($5),"
						  "  pg_catalog.unnest($6), pg_catalog.unnest($7), pg_catalog.unnest($8),"
						  "  pg_catalog.unnest($9))",
						  APPLIER_NCOLS, argtypes);
	ret = SPI_execute_plan(plan, args, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "fleetlm applier: insert failed: %s", SPI_result_code_string(ret));
	rows->n = 0;
}

/*
 * Apply a DELETE_SESSION record: the session, its messages and cursors go.
 * Rows of the session earlier in this batch were flushed just before, so
 * they go too.
 */
static void
applier_delete_session(const char *session_id, int len)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];

	plan = fleet_spi_plan(&plan,
						  "WITH m AS (DELETE FROM fleetlm.messages"
						  "             WHERE session_id OPERATOR(pg_catalog.=) $1),"
						  "     c AS (DELETE FROM fleetlm.cursors"
						  "             WHERE session_id OPERATOR(pg_catalog.=) $1),"
						  "     p AS (DELETE FROM fleetlm.pending_turns"
						  "             WHERE session_id OPERATOR(pg_catalog.=) $1)"
						  " DELETE FROM fleetlm.sessions"
						  "  WHERE session_id OPERATOR(pg_catalog.=) $1",
						  1, argtypes);
	args[0] = PointerGetDatum(cstring_to_text_with_len(session_id, len));
	if (SPI_execute_plan(plan, args, NULL, false, 0) < 0)
		elog(ERROR, "fleetlm applier: delete of session failed");
}

/*
 * One transaction: apply records from `from` up to `target` or
 * fleetlm.flush_batch_size records, store the new position, commit.
 * Returns the new applied position.
 */
/* entry of the tombstone map: session id -> position of its last tombstone */
typedef struct TombstoneEntry
{
	char		session_id[FLEETLM_ID_MAXLEN + 1];
	uint64		lsn;
} TombstoneEntry;

/*
 * Deletions waiting in [from, target): session -> its last tombstone.
 * Appends of those sessions before their tombstone are skipped, so they
 * never reach the table.  Only headers are read; NULL if there are none.
 */
static HTAB *
applier_find_tombstones(uint64 from, uint64 target)
{
	HASHCTL		ctl;
	HTAB	   *map = NULL;
	uint64		pos = from;

	while (pos < target)
	{
		FleetRecordHeader hdr;

		ring_read_header(pos, &hdr);
		if (hdr.type == FLEET_REC_DELETE_SESSION)
		{
			char		id[FLEETLM_ID_MAXLEN + 1];
			TombstoneEntry *e;

			if (map == NULL)
			{
				ctl.keysize = FLEETLM_ID_MAXLEN + 1;
				ctl.entrysize = sizeof(TombstoneEntry);
				ctl.hcxt = CurrentMemoryContext;
				map = hash_create("fleetlm tombstones", 64, &ctl,
								  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
			}
			ring_read(pos + sizeof(FleetRecordHeader), id,
					  Min(hdr.session_len, FLEETLM_ID_MAXLEN));
			id[Min(hdr.session_len, FLEETLM_ID_MAXLEN)] = '\0';
			e = hash_search(map, id, HASH_ENTER, NULL);
			e->lsn = pos;
		}
		pos += FLEET_REC_ALIGN(hdr.total_len);
	}
	return map;
}

static uint64
applier_apply_batch(uint64 from, uint64 target, uint64 *nrows)
{
	static SPIPlanPtr state_plan = NULL;
	Oid			state_types[1] = {INT8OID};
	Datum		state_args[1];
	ApplyRows	rows;
	uint64		pos = from;
	int			nrec = 0;
	int			ntombstones = 0;
	HTAB	   *tombstones = NULL;
	MemoryContext oldcxt;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "fleetlm: applying messages");
	oldcxt = MemoryContextSwitchTo(batch_context);

	memset(&rows, 0, sizeof(rows));
	pending_begin();
	*nrows = 0;
	if (pg_atomic_read_u64(&fleet_shared->tombstones) !=
		pg_atomic_read_u64(&fleet_shared->tombstones_applied))
		tombstones = applier_find_tombstones(from, target);
	while (pos < target && nrec < fleetlm_flush_batch_size)
	{
		char	   *buf = ring_read_record(pos);
		FleetRecord rec;

		record_decode(buf, &rec);
		if (rec.hdr->type == FLEET_REC_APPEND)
		{
			TombstoneEntry *t = NULL;

			if (tombstones != NULL)
			{
				char		id[FLEETLM_ID_MAXLEN + 1];
				int			len = Min(rec.hdr->session_len, FLEETLM_ID_MAXLEN);

				memcpy(id, rec.session_id, len);
				id[len] = '\0';
				t = hash_search(tombstones, id, HASH_FIND, NULL);
			}
			if (t == NULL || t->lsn < pos)
			{
				applier_rows_add(&rows, &rec);
				pending_note(&rec);
				(*nrows)++;
			}
		}
		else if (rec.hdr->type == FLEET_REC_DELETE_SESSION)
		{
			applier_rows_flush(&rows);
			pending_flush();
			applier_delete_session(rec.session_id, rec.hdr->session_len);
			ntombstones++;
		}
		pos += FLEET_REC_ALIGN(rec.hdr->total_len);
		nrec++;
	}
	applier_rows_flush(&rows);
	pending_flush();

	state_plan = fleet_spi_plan(&state_plan,
								"UPDATE fleetlm.wal_state"
								" SET applied_lsn = $1, applied_at = pg_catalog.now()",
								1, state_types);
	state_args[0] = Int64GetDatum((int64) pos);
	if (SPI_execute_plan(state_plan, state_args, NULL, false, 0) != SPI_OK_UPDATE ||
		SPI_processed != 1)
		elog(ERROR, "fleetlm applier: could not update fleetlm.wal_state");

	MemoryContextSwitchTo(oldcxt);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	/*
	 * As worker_spi does: autovacuum and autoanalyze must see our rows.  At
	 * most once a second here; what is left pending is forced out before
	 * the next sleep (applier_main).
	 */
	if (pgstat_report_stat(false) != 0)
		applier_stats_pending = true;
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextReset(batch_context);
	if (ntombstones > 0)
		fleet_count(&fleet_shared->tombstones_applied, ntombstones);
	return pos;
}

/*
 * Make `applied` visible: readers walking the ring hold reclaim_lock, so
 * they never read bytes an insert may now overwrite.
 */
static void
applier_publish(uint64 applied)
{
	replica_log_applied(applied);
	LWLockAcquire(fleet_shared->reclaim_lock, LW_EXCLUSIVE);
	fleet_write_pos(&fleet_shared->applied, applied);
	LWLockRelease(fleet_shared->reclaim_lock);
	ConditionVariableBroadcast(&fleet_shared->space_cv);
	ConditionVariableBroadcast(&fleet_shared->applied_cv);
}

/*
 * Apply everything in [applied, target), in as many batches as it takes.
 * Errors propagate to the caller.  Also used by recovery, to make room in
 * the ring while it replays.
 */
void
applier_apply_until(uint64 target)
{
	uint64		applied = fleet_read_pos(&fleet_shared->applied);

	while (applied < target)
	{
		instr_time	t0,
					t1;
		uint64		nrows;

		CHECK_FOR_INTERRUPTS();
		INSTR_TIME_SET_CURRENT(t0);
		applied = applier_apply_batch(applied, target, &nrows);
		INSTR_TIME_SET_CURRENT(t1);
		INSTR_TIME_SUBTRACT(t1, t0);
		/* counters first: whoever sees the new position sees them too */
		fleet_count(&fleet_shared->applier_batches, 1);
		fleet_count(&fleet_shared->applier_rows, nrows);
		fleet_count(&fleet_shared->applier_usec, INSTR_TIME_GET_MICROSEC(t1));
		applier_publish(applied);
	}
}

/*
 * The applier's own settings, whatever the database or role defaults say:
 * durable commits, a bounded lock wait (so that a lock holder cannot stall
 * it unseen, see applywait.c), no statement or idle timeouts, writable
 * transactions, read committed, and no JIT for its large array inserts.
 */
static void
applier_set_options(void)
{
	char		buf[32];

	SetConfigOption("application_name", "fleetlm applier", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("synchronous_commit", "on", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_read_only", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_deferrable", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("statement_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("idle_in_transaction_session_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("session_replication_role", "origin", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("search_path", "pg_catalog", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("jit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	snprintf(buf, sizeof(buf), "%d", fleetlm_applier_lock_timeout_ms);
	SetConfigOption("lock_timeout", buf, PGC_SUSET, PGC_S_OVERRIDE);
}

/*
 * Log a failed batch with everything the error says: SQLSTATE, detail,
 * hint, the table and constraint involved, and when we retry.
 */
static void
applier_report_error(ErrorData *edata, int backoff_ms)
{
	StringInfoData detail;

	initStringInfo(&detail);
	appendStringInfo(&detail, "SQLSTATE %s.", unpack_sql_state(edata->sqlerrcode));
	if (edata->detail)
		appendStringInfo(&detail, " %s", edata->detail);
	if (edata->schema_name && edata->table_name)
		appendStringInfo(&detail, " Table \"%s.%s\".", edata->schema_name, edata->table_name);
	if (edata->constraint_name)
		appendStringInfo(&detail, " Constraint \"%s\".", edata->constraint_name);
	if (edata->context)
		appendStringInfo(&detail, " Context: %s.", edata->context);
	appendStringInfo(&detail, " The batch was rolled back; its messages stay in the WAL and the ring; retrying in %d ms.",
					 backoff_ms);
	ereport(WARNING,
			(errcode(edata->sqlerrcode),
			 errmsg("fleetlm applier could not apply messages: %s", edata->message),
			 errdetail_internal("%s", detail.data),
			 edata->hint ? errhint("%s", edata->hint) : 0));
	pfree(detail.data);
}

/*
 * Main loop of the applier.
 */
void
applier_main(Datum main_arg)
{
	int			backoff_ms = 0;
	uint64		last_applied_seg = UINT64_MAX;
	uint64		last_written_seg = UINT64_MAX;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	fleet_shared->applier_pid = MyProcPid;
	fleet_shared->applier_latch = MyLatch;
	before_shmem_exit(applier_shutdown, (Datum) 0);

	BackgroundWorkerInitializeConnection(fleetlm_database, NULL, 0);
	applier_set_options();
	pgstat_report_appname("fleetlm applier");

	applier_context = AllocSetContextCreate(TopMemoryContext, "fleetlm applier",
											ALLOCSET_DEFAULT_SIZES);
	batch_context = AllocSetContextCreate(applier_context, "fleetlm applier batch",
										  ALLOCSET_DEFAULT_SIZES);

	/* a restart after an error while READY keeps going where it was */
	if (pg_atomic_read_u32(&fleet_shared->state) != FLEET_STATE_READY)
	{
		PG_TRY();
		{
			recovery_run();
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			/* keep the reason for the "not ready" error, then exit */
			MemoryContextSwitchTo(applier_context);
			edata = CopyErrorData();
			fleetlm_set_recovery_error(edata->message);
			PG_RE_THROW();
		}
		PG_END_TRY();
		fleetlm_set_recovery_error("");
	}

	for (;;)
	{
		uint64		applied;
		uint64		durable;
		int			rc;
		long		timeout;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			applier_set_options();
		}

		durable = fleet_read_pos(&fleet_shared->durable);
		applied = fleet_read_pos(&fleet_shared->applied);

		/* the ring belongs to a dropped installation: leave it alone */
		if (pg_atomic_read_u32(&fleet_shared->reinstalled) != 0)
			durable = applied;

		if (durable > applied)
		{
			MemoryContext cxt = CurrentMemoryContext;

			PG_TRY();
			{
				applier_apply_until(durable);
				if (backoff_ms > 0)
					ereport(LOG, (errmsg("fleetlm applier is applying again")));
				backoff_ms = 0;
			}
			PG_CATCH();
			{
				ErrorData  *edata;

				MemoryContextSwitchTo(cxt);
				edata = CopyErrorData();
				FlushErrorState();
				AbortCurrentTransaction();
				MemoryContextReset(batch_context);
				pgstat_report_activity(STATE_IDLE, NULL);
				pg_atomic_fetch_add_u64(&fleet_shared->applier_errors, 1);
				backoff_ms = backoff_ms == 0 ? 100 : Min(backoff_ms * 2, APPLIER_MAX_BACKOFF_MS);
				/* a lock holder may be waiting for us to give up: come back soon */
				if (edata->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE)
					backoff_ms = Min(backoff_ms, APPLIER_MAX_LOCK_BACKOFF_MS);
				applier_report_error(edata, backoff_ms);
				FreeErrorData(edata);
			}
			PG_END_TRY();
		}

		/* housekeeping, off the append path */
		applied = fleet_read_pos(&fleet_shared->applied);
		{
			uint64		written = fleet_read_pos(&fleet_shared->written);

			if (segment_start(applied) != last_applied_seg ||
				segment_start(written) != last_written_seg)
			{
				segment_maintain(applied, written);
				last_applied_seg = segment_start(applied);
				last_written_seg = segment_start(written);
			}
		}
		/* one partition at a time: appends elsewhere go on meanwhile */
		if (session_crowded())
		{
			/* backends waiting for a free entry wait on applied_cv */
			if (session_evict(applied, false) > 0)
				ConditionVariableBroadcast(&fleet_shared->applied_cv);
		}

		/*
		 * Sleep until the next round.  While backing off after an error,
		 * wake-ups only serve interrupts: appenders poke us when the ring
		 * fills, which is exactly when retrying in a tight loop would hurt.
		 */
		timeout = backoff_ms > 0 ? backoff_ms : fleetlm_flush_interval_ms;
		if (applier_stats_pending)
		{
			/* outside a transaction the rate limit would never see time pass */
			pgstat_report_stat(true);
			applier_stats_pending = false;
		}
		{
			TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout);

			for (;;)
			{
				long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until);

				if (left <= 0)
					break;
				rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							   left, FLEETLM_WAIT_EVENT);
				if (rc & WL_LATCH_SET)
				{
					ResetLatch(MyLatch);
					CHECK_FOR_INTERRUPTS();
					if (ConfigReloadPending || backoff_ms == 0)
						break;
				}
			}
		}
	}
}

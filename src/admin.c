/*-------------------------------------------------------------------------
 *
 * admin.c
 *	  SQL functions for operators: fleetlm.flush and fleetlm.stats.
 *
 * src/admin.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xlog.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "commands/dbcommands.h"
#include "utils/builtins.h"

#include "applier.h"
#include "applywait.h"
#include "dispatch.h"
#include "fleetlm.h"
#include "replica.h"
#include "session.h"
#include "shmem.h"
#include "walwriter.h"

PG_FUNCTION_INFO_V1(fleetlm_flush);
PG_FUNCTION_INFO_V1(fleetlm_stats);
PG_FUNCTION_INFO_V1(fleetlm_created);

#define STATS_NATTS		33

/*
 * fleetlm.flush(): return once every message appended before the call
 * (durable, or still on its way to the disk with synchronous_append = off)
 * is in fleetlm.messages.
 */
Datum
fleetlm_flush(PG_FUNCTION_ARGS)
{
	uint64		target;

	fleetlm_require_primary("flush");
	fleetlm_wait_ready();
	target = fleet_read_pos(&fleet_shared->inserted);
	applywait_applied(target, "fleetlm.flush()");
	PG_RETURN_VOID();
}

/*
 * fleetlm.stats(): one row of counters and positions.
 */
Datum
fleetlm_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[STATS_NATTS];
	bool		nulls[STATS_NATTS];
	FleetShared *s;
	uint64		appends,
				fsyncs,
				inserted,
				applied;
	int			i = 0;

	fleetlm_require_shmem();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (tupdesc->natts != STATS_NATTS)
		elog(ERROR, "fleetlm.stats() has %d columns, expected %d",
			 tupdesc->natts, STATS_NATTS);

	s = fleet_shared;
	memset(nulls, 0, sizeof(nulls));
	appends = pg_atomic_read_u64(&s->appends);
	fsyncs = pg_atomic_read_u64(&s->fsyncs);
	inserted = pg_atomic_read_u64(&s->inserted);
	applied = pg_atomic_read_u64(&s->applied);

	values[i++] = CStringGetTextDatum(RecoveryInProgress() ? "standby" :
									  fleetlm_state_name(pg_atomic_read_u32(&s->state)));
	values[i++] = Int64GetDatum((int64) inserted);
	values[i++] = Int64GetDatum((int64) pg_atomic_read_u64(&s->written));
	values[i++] = Int64GetDatum((int64) pg_atomic_read_u64(&s->durable));
	values[i++] = Int64GetDatum((int64) applied);
	values[i++] = Int64GetDatum((int64) appends);
	values[i++] = Int64GetDatum((int64) pg_atomic_read_u64(&s->append_bytes));
	values[i++] = Int64GetDatum((int64) fsyncs);
	values[i++] = Float8GetDatum(fsyncs > 0 ? (double) appends / fsyncs : 0.0);
	values[i++] = Float8GetDatum(pg_atomic_read_u64(&s->fsync_usec) / 1000.0);
	values[i++] = Int64GetDatum((int64) pg_atomic_read_u64(&s->applier_batches));
	values[i++] = Int64GetDatum((int64) pg_atomic_read_u64(&s->applier_rows));
	values[i++] = Float8GetDatum(pg_atomic_read_u64(&s->applier_usec) / 1000.0);
	values[i++] = Int64GetDatum((int64) pg_atomic_read_u64(&s->applier_errors));
	values[i++] = Int64GetDatum((int64) s->ring_size);
	values[i++] = Int64GetDatum((int64) (inserted - applied));
	values[i++] = Int64GetDatum((int64) pg_atomic_read_u64(&s->space_waits));
	values[i++] = Int64GetDatum((int64) session_count());
	values[i++] = Int64GetDatum((int64) pg_atomic_read_u64(&s->recovery_records));
	values[i++] = Float8GetDatum(pg_atomic_read_u64(&s->recovery_usec) / 1000.0);
	values[i++] = Int64GetDatum((int64) fleetlm_shmem_size());
	values[i++] = CStringGetTextDatum(fleetlm_wal_directory);
	if (pg_atomic_read_u32(&s->writer_error) != 0)
		values[i++] = CStringGetTextDatum(strerror((int) pg_atomic_read_u32(&s->writer_error)));
	else
		nulls[i++] = true;
	if (s->writer_pid != 0)
		values[i++] = Int32GetDatum(s->writer_pid);
	else
		nulls[i++] = true;
	if (s->applier_pid != 0)
		values[i++] = Int32GetDatum(s->applier_pid);
	else
		nulls[i++] = true;
	if (dispatch_shared->pid != 0)
		values[i++] = Int32GetDatum(dispatch_shared->pid);
	else
		nulls[i++] = true;
	values[i++] = Int64GetDatum((int64) pg_atomic_read_u64(&dispatch_shared->turns_started));
	values[i++] = Int64GetDatum((int64) pg_atomic_read_u64(&dispatch_shared->turns_completed));
	values[i++] = Int64GetDatum((int64) pg_atomic_read_u64(&dispatch_shared->turns_failed));
	values[i++] = Int64GetDatum((int64) pg_atomic_read_u64(&dispatch_shared->attempts_retried));
	values[i++] = Int32GetDatum((int32) pg_atomic_read_u32(&dispatch_shared->in_flight));
	values[i++] = Int32GetDatum((int32) pg_atomic_read_u32(&dispatch_shared->turns_tracked));
	values[i++] = Float8GetDatum(pg_atomic_read_u64(&dispatch_shared->http_usec) / 1000.0);
	Assert(i == STATS_NATTS);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * fleetlm._created(), run by the install script.  If this server already
 * runs a WAL of an earlier installation (the extension was dropped and is
 * being created again), appends must stop until a restart: the next
 * recovery discards that WAL, so anything acknowledged into it now would
 * be lost.
 */
Datum
fleetlm_created(PG_FUNCTION_ARGS)
{
	if (fleet_shared == NULL || fleet_shared->wal_id == 0)
		PG_RETURN_VOID();
	if (get_database_oid(fleetlm_database, true) != MyDatabaseId)
		PG_RETURN_VOID();
	pg_atomic_write_u32(&fleet_shared->reinstalled, 1);
	ereport(WARNING,
			(errmsg("fleetlm was created again while the server runs the WAL of its earlier installation"),
			 errhint("Restart the server before using fleetlm.")));
	PG_RETURN_VOID();
}

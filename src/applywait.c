/*-------------------------------------------------------------------------
 *
 * applywait.c
 *	  Backends waiting for the applier: fleetlm.flush(), ring space when
 *	  the applier is behind, and a deletion that must reach the tables
 *	  before its session id can be used again.
 *
 * Such a wait can form a cycle that PostgreSQL's deadlock detector cannot
 * see: the backend waits for the applier (a condition variable), while the
 * applier waits for a lock the backend's transaction holds (e.g.
 * `BEGIN; SELECT fleetlm.mark_read(...); SELECT fleetlm.delete_session(...);
 * SELECT fleetlm.flush();`: the applier's delete of the cursor row waits
 * for the row lock of mark_read).  So, while it waits, a backend checks
 * every APPLYWAIT_CHECK_MS whether the applier is waiting for a heavyweight
 * lock, and if so, whether this backend blocks it, directly or through a
 * short chain of other waiters (pg_blocking_pids).  If it does, the wait
 * fails with SQLSTATE 40P01, as a detected deadlock does; the transaction
 * rolls back, its locks go, and the applier goes on.  Cycles through other
 * processes that this check does not follow are broken by the applier's
 * lock_timeout (fleetlm.applier_lock_timeout): its batch rolls back and is
 * retried, and every wait here stays cancellable.
 *
 * src/applywait.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "storage/condition_variable.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "utils/array.h"
#include "utils/fmgrprotos.h"
#include "utils/wait_event.h"

#include "applier.h"
#include "applywait.h"
#include "fleetlm.h"
#include "shmem.h"
#include "walwriter.h"

/* how often a waiter looks for a deadlock with the applier */
#define APPLYWAIT_CHECK_MS		100
/* how long a chain of lock waiters is followed */
#define APPLYWAIT_MAX_DEPTH		4

static bool applywait_blocked_by_me(int pid, int depth);
static void applywait_check_cycle(const char *what);

/*
 * Does process `pid` wait for a lock this backend holds, directly or via
 * other waiters?
 */
static bool
applywait_blocked_by_me(int pid, int depth)
{
	ArrayType  *arr;
	Datum	   *elems;
	int			n;

	arr = DatumGetArrayTypeP(DirectFunctionCall1(pg_blocking_pids,
												 Int32GetDatum(pid)));
	deconstruct_array(arr, INT4OID, sizeof(int32), true, TYPALIGN_INT,
					  &elems, NULL, &n);
	for (int i = 0; i < n; i++)
		if (DatumGetInt32(elems[i]) == MyProcPid)
			return true;
	if (depth + 1 < APPLYWAIT_MAX_DEPTH)
	{
		for (int i = 0; i < n; i++)
		{
			int			other = DatumGetInt32(elems[i]);

			if (other != pid && applywait_blocked_by_me(other, depth + 1))
				return true;
		}
	}
	return false;
}

/*
 * Fail the wait if the applier waits for us: neither could ever go on.
 */
static void
applywait_check_cycle(const char *what)
{
	int			pid = fleet_shared->applier_pid;
	PGPROC	   *proc;

	if (pid == 0)
		return;
	proc = BackendPidGetProc(pid);
	if (proc == NULL || (proc->wait_event_info & 0xFF000000) != PG_WAIT_LOCK)
		return;
	if (!applywait_blocked_by_me(pid, 0))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_T_R_DEADLOCK_DETECTED),
			 errmsg("deadlock detected: the fleetlm applier waits for a lock held by this transaction"),
			 errdetail("This transaction waits for the applier (%s), and the applier (PID %d) waits for a lock this transaction holds.",
					   what, pid),
			 errhint("Commit first, or do not lock fleetlm's tables or rows in a transaction that waits for the applier.")));
}

/*
 * Wait until the applier has applied everything below `target` (and so
 * committed it to the tables).  `what` names the wait in a deadlock error.
 */
void
applywait_applied(uint64 target, const char *what)
{
	if (fleet_read_pos(&fleet_shared->applied) >= target)
		return;
	/* asynchronous appends below target must become durable first */
	walwriter_wake();
	ConditionVariablePrepareToSleep(&fleet_shared->applied_cv);
	while (fleet_read_pos(&fleet_shared->applied) < target)
	{
		applier_wake();
		applywait_check_cycle(what);
		(void) ConditionVariableTimedSleep(&fleet_shared->applied_cv,
										   APPLYWAIT_CHECK_MS,
										   FLEETLM_WAIT_EVENT);
	}
	ConditionVariableCancelSleep();
}

/*
 * Sleep until the ring has room for len more bytes (the applier frees it).
 */
void
applywait_space(Size len)
{
	pg_atomic_fetch_add_u64(&fleet_shared->space_waits, 1);
	ConditionVariablePrepareToSleep(&fleet_shared->space_cv);
	for (;;)
	{
		uint64		inserted = fleet_read_pos(&fleet_shared->inserted);
		uint64		applied = fleet_read_pos(&fleet_shared->applied);

		if (inserted + len - applied <= fleet_shared->ring_size)
			break;
		applier_wake();
		applywait_check_cycle("space in the ring, fleetlm.wal_buffers");
		(void) ConditionVariableTimedSleep(&fleet_shared->space_cv,
										   APPLYWAIT_CHECK_MS,
										   FLEETLM_WAIT_EVENT);
	}
	ConditionVariableCancelSleep();
}

/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Shared memory of fleetlm: the control block, the ring and the session
 *	  table, requested and initialized through the shmem hooks.
 *
 * See shmem.h for the locking rules of the control block.
 *
 * src/shmem.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "dispatch.h"
#include "fleetlm.h"
#include "session.h"
#include "shmem.h"
#include "stream.h"

FleetShared *fleet_shared = NULL;
char	   *fleet_ring = NULL;
FleetWaiter *fleet_waiters = NULL;
int			fleet_nwaiters = 0;
pg_atomic_uint32 *fleet_poll_buckets = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void shmem_startup(void);
static void shmem_request_hook_fn(void);

/*
 * Total shared memory fleetlm needs: control block, ring, session table.
 */
Size
fleetlm_shmem_size(void)
{
	Size		size;

	size = MAXALIGN(sizeof(FleetShared));
	size = add_size(size, MAXALIGN((Size) FLEETLM_RING_SIZE));
	size = add_size(size, MAXALIGN(mul_size(MaxBackends, sizeof(FleetWaiter))));
	size = add_size(size, MAXALIGN(mul_size(FLEET_POLL_BUCKETS, sizeof(pg_atomic_uint32))));
	size = add_size(size, session_shmem_size());
	size = add_size(size, stream_shmem_size());
	size = add_size(size, dispatch_shmem_size());
	return size;
}

/*
 * Chain our hooks in front of any previous ones; called from _PG_init while
 * shared_preload_libraries is being processed.
 */
void
shmem_install_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = shmem_request_hook_fn;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = shmem_startup;
}

static void
shmem_request_hook_fn(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	shmem_request();
}

/*
 * Request our shared memory and the named LWLock tranches.
 */
void
shmem_request(void)
{
	RequestAddinShmemSpace(fleetlm_shmem_size());
	RequestNamedLWLockTranche("fleetlm", 4);
	RequestNamedLWLockTranche("fleetlm_session", FLEET_SESSION_PARTITIONS);
	stream_request_locks();
	dispatch_request_locks();
}

/*
 * Attach to (and in the postmaster, initialize) fleetlm's shared memory.
 * Runs in the postmaster at start and after every crash-restart, so a
 * crash always begins again from STARTING with a fresh ring and an empty
 * session table; recovery rebuilds what is needed from the WAL.
 */
static void
shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);

	fleet_shared = ShmemInitStruct("fleetlm control", sizeof(FleetShared), &found);
	if (!found)
	{
		LWLockPadded *locks = GetNamedLWLockTranche("fleetlm");
		LWLockPadded *plocks = GetNamedLWLockTranche("fleetlm_session");
		int			i;

		memset(fleet_shared, 0, sizeof(FleetShared));
		pg_atomic_init_u32(&fleet_shared->state, FLEET_STATE_STARTING);
		pg_atomic_init_u32(&fleet_shared->writer_error, 0);
		pg_atomic_init_u64(&fleet_shared->failed_segment, 0);
		pg_atomic_init_u64(&fleet_shared->segment_wanted, 0);
		pg_atomic_init_u32(&fleet_shared->pollers, 0);
		pg_atomic_init_u32(&fleet_shared->reinstalled, 0);
		fleet_shared->ring_size = FLEETLM_RING_SIZE;
		fleet_shared->segment_size = FLEETLM_SEGMENT_SIZE;
		pg_atomic_init_u64(&fleet_shared->inserted, FLEET_FIRST_LSN);
		pg_atomic_init_u64(&fleet_shared->written, FLEET_FIRST_LSN);
		pg_atomic_init_u64(&fleet_shared->durable, FLEET_FIRST_LSN);
		pg_atomic_init_u64(&fleet_shared->applied, FLEET_FIRST_LSN);
		pg_atomic_init_u64(&fleet_shared->eviction_count, 0);
		pg_atomic_init_u64(&fleet_shared->durable_xlog, 0);
		pg_atomic_init_u32(&fleet_shared->replica_state, 0);
		pg_atomic_init_u32(&fleet_shared->replica_seen, 0);
		fleet_shared->insert_lock = &locks[0].lock;
		fleet_shared->reclaim_lock = &locks[1].lock;
		fleet_shared->segment_lock = &locks[2].lock;
		fleet_shared->write_lock = &locks[3].lock;
		for (i = 0; i < FLEET_SESSION_PARTITIONS; i++)
			fleet_shared->partition_locks[i] = &plocks[i].lock;
		ConditionVariableInit(&fleet_shared->space_cv);
		ConditionVariableInit(&fleet_shared->ready_cv);
		ConditionVariableInit(&fleet_shared->applied_cv);
		pg_atomic_init_u64(&fleet_shared->appends, 0);
		pg_atomic_init_u64(&fleet_shared->append_bytes, 0);
		pg_atomic_init_u64(&fleet_shared->tombstones, 0);
		pg_atomic_init_u64(&fleet_shared->tombstones_applied, 0);
		pg_atomic_init_u64(&fleet_shared->space_waits, 0);
		pg_atomic_init_u64(&fleet_shared->fsyncs, 0);
		pg_atomic_init_u64(&fleet_shared->fsync_usec, 0);
		pg_atomic_init_u64(&fleet_shared->applier_batches, 0);
		pg_atomic_init_u64(&fleet_shared->applier_rows, 0);
		pg_atomic_init_u64(&fleet_shared->applier_usec, 0);
		pg_atomic_init_u64(&fleet_shared->applier_errors, 0);
		pg_atomic_init_u64(&fleet_shared->recovery_records, 0);
		pg_atomic_init_u64(&fleet_shared->recovery_usec, 0);
		SpinLockInit(&fleet_shared->error_lock);
		fleet_shared->recovery_error[0] = '\0';
	}

	fleet_ring = ShmemInitStruct("fleetlm ring", (Size) FLEETLM_RING_SIZE, &found);

	fleet_nwaiters = MaxBackends;
	fleet_waiters = ShmemInitStruct("fleetlm waiters",
									mul_size(fleet_nwaiters, sizeof(FleetWaiter)),
									&found);
	if (!found)
	{
		for (int i = 0; i < fleet_nwaiters; i++)
		{
			pg_atomic_init_u64(&fleet_waiters[i].wait_lsn, 0);
			fleet_waiters[i].latch = NULL;
			pg_atomic_init_u32(&fleet_waiters[i].polling, 0);
			pg_atomic_init_u32(&fleet_waiters[i].poll_hash, 0);
		}
	}

	fleet_poll_buckets = ShmemInitStruct("fleetlm poll buckets",
										 mul_size(FLEET_POLL_BUCKETS, sizeof(pg_atomic_uint32)),
										 &found);
	if (!found)
	{
		for (int i = 0; i < FLEET_POLL_BUCKETS; i++)
			pg_atomic_init_u32(&fleet_poll_buckets[i], 0);
	}

	session_shmem_init();
	stream_shmem_init();
	dispatch_shmem_init();

	LWLockRelease(AddinShmemInitLock);
}

/*
 * Error out unless the library was preloaded (and so has shared memory).
 */
void
fleetlm_require_shmem(void)
{
	if (fleet_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("fleetlm must be loaded via shared_preload_libraries"),
				 errhint("Add 'fleetlm' to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/*
 * Error out unless we are connected to fleetlm.database: the applier writes
 * into that database's tables only.
 */
void
fleetlm_require_database(void)
{
	static Oid	fleet_db_oid = InvalidOid;

	if (!OidIsValid(fleet_db_oid))
		fleet_db_oid = get_database_oid(fleetlm_database, true);
	if (fleet_db_oid != MyDatabaseId)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("fleetlm can only be used in database \"%s\"",
						fleetlm_database),
				 errhint("Connect to database \"%s\", or set fleetlm.database to this database and restart the server.",
						 fleetlm_database)));
}

/*
 * Remember why recovery failed ("" once it succeeded), for callers that
 * time out waiting for READY.
 */
void
fleetlm_set_recovery_error(const char *msg)
{
	SpinLockAcquire(&fleet_shared->error_lock);
	strlcpy(fleet_shared->recovery_error, msg, sizeof(fleet_shared->recovery_error));
	SpinLockRelease(&fleet_shared->error_lock);
}

const char *
fleetlm_state_name(uint32 state)
{
	switch ((FleetState) state)
	{
		case FLEET_STATE_STARTING:
			return "starting";
		case FLEET_STATE_RECOVERING:
			return "recovering";
		case FLEET_STATE_READY:
			return "ready";
	}
	return "unknown";
}

/*
 * Entry check of every SQL function that touches the log: shared memory
 * present, right database, and recovery finished.
 *
 * Waits until recovery has finished and appends are accepted, at most
 * fleetlm.startup_timeout.  Pokes the applier so that a freshly created
 * extension is noticed at once rather than at its next poll.
 */
void
fleetlm_wait_ready(void)
{
	TimestampTz start;

	fleetlm_require_shmem();
	fleetlm_require_database();
	if (unlikely(pg_atomic_read_u32(&fleet_shared->reinstalled) != 0))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("fleetlm was dropped and created again since the server started"),
				 errdetail("The running WAL belongs to the dropped installation."),
				 errhint("Restart the server to start the new installation's WAL.")));
	if (likely(pg_atomic_read_u32(&fleet_shared->state) == FLEET_STATE_READY))
		return;
	/* a hot standby reads the tables and the replicated log at once */
	if (RecoveryInProgress())
		return;

	start = GetCurrentTimestamp();
	ConditionVariablePrepareToSleep(&fleet_shared->ready_cv);
	for (;;)
	{
		uint32		state = pg_atomic_read_u32(&fleet_shared->state);
		long		waited;
		Latch	   *applier = fleet_shared->applier_latch;

		if (state == FLEET_STATE_READY)
			break;
		waited = TimestampDifferenceMilliseconds(start, GetCurrentTimestamp());
		if (waited >= fleetlm_startup_timeout_ms)
		{
			char		why[sizeof(fleet_shared->recovery_error)];

			ConditionVariableCancelSleep();
			SpinLockAcquire(&fleet_shared->error_lock);
			strlcpy(why, fleet_shared->recovery_error, sizeof(why));
			SpinLockRelease(&fleet_shared->error_lock);
			ereport(ERROR,
					(errcode(ERRCODE_CANNOT_CONNECT_NOW),
					 errmsg("fleetlm is not ready (state \"%s\") after waiting %d ms",
							fleetlm_state_name(state), fleetlm_startup_timeout_ms),
					 why[0] ? errdetail("The applier's last recovery attempt failed: %s", why) : 0,
					 errhint("Check the server log for the fleetlm applier; it replays the WAL before appends are accepted.")));
		}
		if (applier != NULL)
			SetLatch(applier);
		(void) ConditionVariableTimedSleep(&fleet_shared->ready_cv,
										   Min(100, fleetlm_startup_timeout_ms - waited),
										   FLEETLM_WAIT_EVENT);
	}
	ConditionVariableCancelSleep();
}

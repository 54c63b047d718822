/*-------------------------------------------------------------------------
 *
 * walwriter.c
 *	  The "fleetlm wal writer" background worker: writes the ring to the WAL
 *	  segments, fdatasyncs, and wakes the backends whose records became
 *	  durable.
 *
 * Group commit: no lock that appends need is held during I/O, so appends
 * keep landing in the ring while the disk works; the next round writes all
 * of them and one fdatasync serves them all.  The loop does nothing else
 * (segment preallocation and recycling are the applier's), so an append
 * never waits behind a table flush.
 *
 * A round can also be run by a backend waiting for its own append
 * (walwriter_flush_for), as PostgreSQL backends flush their own WAL: rounds
 * are serialized by FleetShared->write_lock, held during the write and the
 * fdatasync, so exactly one process writes at a time and `written` and
 * `durable` only move under it.
 *
 * A failed write or fdatasync is a PANIC, as for PostgreSQL's own WAL: the
 * records of that round are never acknowledged, and crash recovery reads
 * back what the disk really holds.  A segment that cannot be created (disk
 * full) is not fatal: the writer sets FleetShared->writer_error, so new
 * appends fail with a clear error, and retries every second; records
 * already in the ring wait and become durable once space is free.
 *
 * src/walwriter.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <unistd.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "portability/instr_time.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "fleetlm.h"
#include "segment.h"
#include "ring.h"
#include "shmem.h"
#include "walwriter.h"

/* the segment this process has open for writing (writer or backend) */
static int	writer_fd = -1;
static uint64 writer_seg = 0;

static bool walwriter_open_segment(uint64 seg, bool may_create);
static bool walwriter_write(uint64 from, uint64 to, bool may_create);
static bool walwriter_round(bool may_create);
static void walwriter_wake_waiters(void);
static void walwriter_set_error(uint64 seg, int err);
static void walwriter_clear_error(uint64 seg);
static void walwriter_sync(void);
static void walwriter_wait_ready(void);
static void walwriter_shutdown(int code, Datum arg);

/*
 * Register the worker; called from _PG_init.
 */
void
walwriter_register(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS;
	worker.bgw_start_time = BgWorkerStart_PostmasterStart;
	worker.bgw_restart_time = 1;
	strcpy(worker.bgw_library_name, "fleetlm");
	strcpy(worker.bgw_function_name, "walwriter_main");
	strcpy(worker.bgw_name, "fleetlm wal writer");
	strcpy(worker.bgw_type, "fleetlm wal writer");
	RegisterBackgroundWorker(&worker);
}

/*
 * Wake the writer: records were inserted.
 */
void
walwriter_wake(void)
{
	Latch	   *latch = fleet_shared->writer_latch;

	if (latch != NULL)
		SetLatch(latch);
}

static void
walwriter_shutdown(int code, Datum arg)
{
	fleet_shared->writer_latch = NULL;
	fleet_shared->writer_pid = 0;
}

/*
 * A segment could not be created: refuse new appends until it exists.
 */
static void
walwriter_set_error(uint64 seg, int err)
{
	pg_atomic_write_u64(&fleet_shared->failed_segment, seg);
	pg_atomic_write_u32(&fleet_shared->writer_error, (uint32) err);
}

/*
 * Segment `seg` exists and is open: if it is the one that could not be
 * created (or a later one), appends may go on.
 */
static void
walwriter_clear_error(uint64 seg)
{
	if (pg_atomic_read_u32(&fleet_shared->writer_error) == 0 ||
		seg < pg_atomic_read_u64(&fleet_shared->failed_segment))
		return;
	pg_atomic_write_u32(&fleet_shared->writer_error, 0);
	ereport(LOG, (errmsg("fleetlm WAL writer can write again")));
}

/*
 * Open segment `seg` for writing.  The writer (may_create) creates it if
 * the applier has not preallocated it yet, and returns false with
 * writer_error set if it cannot; a backend only opens what exists and
 * returns false otherwise, leaving creation and its errors to the writer.
 */
static bool
walwriter_open_segment(uint64 seg, bool may_create)
{
	char		path[MAXPGPATH];
	int			err;

	if (writer_fd >= 0)
	{
		close(writer_fd);
		writer_fd = -1;
	}
	writer_fd = segment_open(seg, &err);
	if (writer_fd < 0 && err == ENOENT && !may_create)
		return false;
	if (writer_fd < 0 && err == ENOENT)
	{
		if (!segment_prepare(seg, LOG, &err))
		{
			walwriter_set_error(seg, err);
			return false;
		}
		writer_fd = segment_open(seg, &err);
	}
	if (writer_fd < 0)
	{
		segment_path(seg, path, sizeof(path));
		errno = err;
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("could not open fleetlm WAL segment \"%s\": %m", path)));
		walwriter_set_error(seg, err);
		return false;
	}
	writer_seg = seg;
	walwriter_clear_error(seg);
	return true;
}

static void
walwriter_sync(void)
{
	if (writer_fd >= 0 && pg_fdatasync(writer_fd) != 0)
	{
		char		path[MAXPGPATH];

		segment_path(writer_seg, path, sizeof(path));
		ereport(PANIC,
				(errcode_for_file_access(),
				 errmsg("could not fdatasync fleetlm WAL segment \"%s\": %m", path)));
	}
}

/*
 * Write ring bytes [from, to) to the segments and fdatasync them.  Returns
 * false if a segment could not be opened (see walwriter_open_segment);
 * nothing is published then.  Caller holds write_lock.
 */
static bool
walwriter_write(uint64 from, uint64 to, bool may_create)
{
	uint64		segsize = fleet_shared->segment_size;
	uint64		ringsize = fleet_shared->ring_size;
	uint64		pos = from;

	while (pos < to)
	{
		uint64		seg = segment_start(pos);
		uint64		n;
		uint64		ringoff = pos % ringsize;
		ssize_t		w;

		if (writer_fd < 0 || writer_seg != seg)
		{
			/* a finished segment is synced before we move on */
			walwriter_sync();
			if (!walwriter_open_segment(seg, may_create))
				return false;
		}
		n = Min(to, seg + segsize) - pos;
		n = Min(n, ringsize - ringoff);

		ring_prepare(pos, (Size) n);
		errno = 0;
		w = pg_pwrite(writer_fd, fleet_ring + ringoff, (size_t) n, (off_t) (pos - seg));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
		{
			char		path[MAXPGPATH];

			if (errno == 0)
				errno = ENOSPC;
			segment_path(seg, path, sizeof(path));
			ereport(PANIC,
					(errcode_for_file_access(),
					 errmsg("could not write fleetlm WAL segment \"%s\" at offset %llu: %m",
							path, (unsigned long long) (pos - seg))));
		}
		pos += (uint64) w;
	}
	walwriter_sync();
	return true;
}

/*
 * One group commit: write and fdatasync everything inserted so far, then
 * publish it as durable and wake the waiters.  Caller holds write_lock.
 * Returns false if a segment could not be opened.
 */
static bool
walwriter_round(bool may_create)
{
	uint64		written = fleet_read_pos(&fleet_shared->written);
	uint64		target = fleet_read_pos(&fleet_shared->inserted);
	instr_time	start,
				elapsed;

	if (target <= written)
		return true;
	INSTR_TIME_SET_CURRENT(start);
	if (!walwriter_write(written, target, may_create))
		return false;
	INSTR_TIME_SET_CURRENT(elapsed);
	INSTR_TIME_SUBTRACT(elapsed, start);

	/* counters first: whoever sees the new position sees them too */
	fleet_count(&fleet_shared->fsyncs, 1);
	fleet_count(&fleet_shared->fsync_usec, INSTR_TIME_GET_MICROSEC(elapsed));
	fleet_write_pos(&fleet_shared->written, target);
	fleet_write_pos(&fleet_shared->durable, target);
	ConditionVariableBroadcast(&fleet_shared->durable_cv);
	ConditionVariableBroadcast(&fleet_shared->new_message_cv);
	return true;
}

/*
 * After a round, with write_lock released: wake every waiter that is
 * durable now, and the first one that is not, to lead the next round.  A
 * waiter that failed to get write_lock registered before the holder
 * released it, so the holder's scan (after the release) sees it.
 */
static void
walwriter_wake_waiters(void)
{
	uint64		durable = fleet_read_pos(&fleet_shared->durable);
	uint64		lowest = PG_UINT64_MAX;
	int			next = -1;

	pg_memory_barrier();
	for (int i = 0; i < fleet_nwaiters; i++)
	{
		uint64		w = pg_atomic_read_u64(&fleet_waiters[i].wait_lsn);

		if (w == 0)
			continue;
		if (w <= durable)
			SetLatch(fleet_waiters[i].latch);
		else if (w < lowest)
		{
			lowest = w;
			next = i;
		}
	}
	if (next >= 0)
		SetLatch(fleet_waiters[next].latch);
}

/*
 * Make the log durable up to `end`, for a backend that waits for its
 * append.  As PostgreSQL's XLogFlush does, the backend flushes itself when
 * nobody else is flushing (taking along every record inserted so far: the
 * group commit), and otherwise sleeps until the flush in progress wakes it
 * (see walwriter_wake_waiters).  That spares the round trip through the
 * writer process on the latency path; the writer handles asynchronous
 * appends, segment creation and disk-full retries.  The timeout is only a
 * safety net (a waiter picked to lead that went away meanwhile).
 *
 * With stop_on_die, returns false as soon as the backend is asked to
 * terminate (for callers that hold interrupts); otherwise returns true,
 * with interrupts serviced while sleeping.
 */
bool
walwriter_flush_for(uint64 end, bool stop_on_die)
{
	FleetWaiter *slot;
	bool		done = true;

	if (fleet_read_pos(&fleet_shared->durable) >= end)
		return true;
	if (MyProc == NULL || MyProc->pgprocno >= fleet_nwaiters)
		elog(ERROR, "fleetlm: this process cannot wait for durability");
	slot = &fleet_waiters[MyProc->pgprocno];
	slot->latch = MyLatch;
	pg_atomic_write_u64(&slot->wait_lsn, end);
	pg_memory_barrier();

	PG_TRY();
	{
		while (fleet_read_pos(&fleet_shared->durable) < end)
		{
			if (LWLockConditionalAcquire(fleet_shared->write_lock, LW_EXCLUSIVE))
			{
				bool		ok = true;

				if (fleet_read_pos(&fleet_shared->durable) < end)
					ok = walwriter_round(false);
				LWLockRelease(fleet_shared->write_lock);
				walwriter_wake_waiters();
				if (ok)
					continue;
				/* a segment is missing: the writer creates it */
				walwriter_wake();
			}
			if (stop_on_die && ProcDiePending)
			{
				done = false;
				break;
			}
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 10L, FLEETLM_WAIT_EVENT);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_CATCH();
	{
		pg_atomic_write_u64(&slot->wait_lsn, 0);
		PG_RE_THROW();
	}
	PG_END_TRY();
	pg_atomic_write_u64(&slot->wait_lsn, 0);
	return done;
}

/*
 * Before READY the applier owns the directory (recovery); wait for it.
 */
static void
walwriter_wait_ready(void)
{
	while (pg_atomic_read_u32(&fleet_shared->state) != FLEET_STATE_READY)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000L, FLEETLM_WAIT_EVENT);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ShutdownRequestPending)
			proc_exit(1);
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
}

/*
 * Main loop of the WAL writer.
 */
void
walwriter_main(Datum main_arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	fleet_shared->writer_pid = MyProcPid;
	fleet_shared->writer_latch = MyLatch;
	before_shmem_exit(walwriter_shutdown, (Datum) 0);

	walwriter_wait_ready();
	ereport(LOG,
			(errmsg("fleetlm WAL writer started at position %llu",
					(unsigned long long) fleet_read_pos(&fleet_shared->written))));

	for (;;)
	{
		uint64		written = fleet_read_pos(&fleet_shared->written);
		uint64		target = fleet_read_pos(&fleet_shared->inserted);

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		if (target > written)
		{
			bool		ok;

			LWLockAcquire(fleet_shared->write_lock, LW_EXCLUSIVE);
			ok = walwriter_round(true);
			LWLockRelease(fleet_shared->write_lock);
			walwriter_wake_waiters();
			if (ok)
			{
				/* more may have arrived while we wrote: go again at once */
				continue;
			}
			/* a segment could not be created: wait a second and retry */
			(void) WaitLatch(MyLatch, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 1000L, FLEETLM_WAIT_EVENT);
			CHECK_FOR_INTERRUPTS();
			if (ShutdownRequestPending)
				break;
			continue;
		}

		if (ShutdownRequestPending)
			break;

		/*
		 * Nothing to write, but a segment could not be created: new appends
		 * are refused until it exists, so keep trying on our own.
		 */
		if (pg_atomic_read_u32(&fleet_shared->writer_error) != 0)
		{
			uint64		seg = pg_atomic_read_u64(&fleet_shared->failed_segment);
			int			err;

			if (segment_prepare(seg, LOG, &err))
				walwriter_clear_error(seg);
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000L, FLEETLM_WAIT_EVENT);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}

	if (writer_fd >= 0)
		close(writer_fd);
	/* exit code 1: restart us unless the postmaster is shutting down */
	proc_exit(1);
}

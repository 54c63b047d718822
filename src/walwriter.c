/*-------------------------------------------------------------------------
 *
 * walwriter.c
 *	  Flush rounds of the fleetlm WAL (write the ring to the segments,
 *	  fdatasync, publish `durable`, wake the waiters), and the "fleetlm wal
 *	  writer" background worker.
 *
 * Who flushes.  A backend waiting for its append leads a round itself when
 * nobody else is flushing, as PostgreSQL backends flush their own WAL
 * (walwriter_flush_for); the others sleep in their wait slot until a round
 * covers them.  The writer worker runs rounds for asynchronous appends
 * (synchronous_append = off), creates segments that are missing, and
 * retries after a full disk.  Rounds are serialized by
 * FleetShared->write_lock, held during the write and the fdatasync, so
 * exactly one process writes at a time and `written` and `durable` only
 * move under it.
 *
 * Group commit: no lock that appends need is held during I/O, so appends
 * keep landing in the ring while the disk works; the next round writes all
 * of them and one fdatasync serves them all.
 *
 * Segments.  A round never creates a segment: creating one means writing
 * and syncing a whole file, which must not happen under write_lock on the
 * latency path.  A backend whose round needs a segment that does not exist
 * yet asks the writer for it (FleetShared->segment_wanted) and sleeps;
 * nobody leads again until the writer has created it (outside write_lock)
 * and run the round.  The applier normally preallocates segments well
 * ahead, so this is rare.
 *
 * Failures.  A failed write or fdatasync is a PANIC, as for PostgreSQL's
 * own WAL: the records of that round are never acknowledged, and crash
 * recovery reads back what the disk really holds.  A segment that cannot
 * be created (disk full) is not fatal: the writer sets
 * FleetShared->writer_error, so new appends fail with a clear error, and
 * retries every second; records already in the ring wait (asleep, without
 * leading rounds) and become durable once space is free.
 *
 * Waits never run where they must not: a process that is exiting
 * (proc_exit_inprogress) or was told to die does not start I/O here.
 *
 * src/walwriter.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <unistd.h>

#include "access/xact.h"
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

#include "dispatch.h"
#include "fleetlm.h"
#include "longpoll.h"
#include "replica.h"
#include "ring.h"
#include "segment.h"
#include "shmem.h"
#include "walwriter.h"

/* how long a waiter sleeps before it looks again, in ms (a safety net) */
#define WALWRITER_WAITER_POLL_MS	10
/* ... while a segment is missing or the disk is full: the writer wakes us */
#define WALWRITER_STALLED_POLL_MS	100

/* the segment this process has open for writing (writer or backend) */
static int	writer_fd = -1;
static uint64 writer_seg = 0;

/* set up the exit callback and the transaction callback once per process */
static bool walwriter_callbacks_done = false;

/* this process is in walwriter_flush_for (for the exit callback) */
static bool walwriter_waiting = false;

static bool walwriter_am_writer = false;

static bool walwriter_open_segment(uint64 seg);
static void walwriter_close_segment(void);
static bool walwriter_write(uint64 from, uint64 to);
static bool walwriter_round(void);
static void walwriter_wake_waiters(bool pick_leader);
static bool walwriter_may_lead(void);
static bool walwriter_create_segments(void);
static void walwriter_set_error(uint64 seg, int err);
static void walwriter_clear_error(uint64 seg);
static void walwriter_sync(void);
static void walwriter_wait_ready(void);
static void walwriter_shutdown(int code, Datum arg);
static void walwriter_setup_callbacks(void);
static void walwriter_at_exit(int code, Datum arg);
static void walwriter_xact_callback(XactEvent event, void *arg);

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
 * Wake the writer: records were inserted, or a segment is wanted.
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
 * Segment `seg` exists: if it is the one that could not be created (or a
 * later one), appends may go on.
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

static void
walwriter_close_segment(void)
{
	if (writer_fd >= 0)
		close(writer_fd);
	writer_fd = -1;
	writer_seg = 0;
}

/*
 * Open existing segment `seg` for writing.  Returns false if it does not
 * exist (the writer creates it) or cannot be opened (logged, and reported
 * through writer_error).
 */
static bool
walwriter_open_segment(uint64 seg)
{
	char		path[MAXPGPATH];
	int			err;

	walwriter_close_segment();
	writer_fd = segment_open(seg, &err);
	if (writer_fd < 0 && err == ENOENT)
		return false;
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
 * false if a segment is missing: it is then recorded in segment_wanted for
 * the writer, and nothing is published.  Caller holds write_lock.
 *
 * The missing segment is checked before anything is written, so a round
 * that cannot complete does no I/O at all.
 */
static bool
walwriter_write(uint64 from, uint64 to)
{
	uint64		segsize = fleet_shared->segment_size;
	uint64		ringsize = fleet_shared->ring_size;
	uint64		pos = from;

	/* every segment this round needs must exist before we write a byte */
	for (uint64 seg = segment_start(from); seg < to; seg += segsize)
	{
		int			err;
		int			fd;

		if (seg == writer_seg && writer_fd >= 0)
			continue;
		if (seg == segment_start(from))
		{
			if (!walwriter_open_segment(seg))
			{
				pg_atomic_write_u64(&fleet_shared->segment_wanted, seg);
				return false;
			}
			continue;
		}
		fd = segment_open(seg, &err);
		if (fd < 0)
		{
			pg_atomic_write_u64(&fleet_shared->segment_wanted, seg);
			return false;
		}
		close(fd);
	}

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
			if (!walwriter_open_segment(seg))
			{
				/* removed under us: cannot happen, segments ahead are kept */
				pg_atomic_write_u64(&fleet_shared->segment_wanted, seg);
				return false;
			}
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
 * publish it as durable and note the long-pollers to wake.  Caller holds
 * write_lock.  Returns false if a segment is missing.
 */
static bool
walwriter_round(void)
{
	uint64		written = fleet_read_pos(&fleet_shared->written);
	uint64		target = fleet_read_pos(&fleet_shared->inserted);
	instr_time	start,
				elapsed;

	if (target <= written)
		return true;
	INSTR_TIME_SET_CURRENT(start);
	if (!walwriter_write(written, target))
		return false;
	if (fleetlm_replication)
		replica_log_chunk(written, target);
	INSTR_TIME_SET_CURRENT(elapsed);
	INSTR_TIME_SUBTRACT(elapsed, start);

	/* counters first: whoever sees the new position sees them too */
	fleet_count(&fleet_shared->fsyncs, 1);
	fleet_count(&fleet_shared->fsync_usec, INSTR_TIME_GET_MICROSEC(elapsed));
	fleet_write_pos(&fleet_shared->written, target);
	longpoll_publish_durable(written, target);
	return true;
}

/*
 * After a round, with write_lock released: wake every waiter that is
 * durable now and the long-pollers the round found, and, with
 * pick_leader, the first waiter that is not durable yet, to lead the next
 * round.  A waiter that failed to get write_lock registered before the
 * holder released it, so the holder's scan (after the release) sees it.
 */
static void
walwriter_wake_waiters(bool pick_leader)
{
	uint64		durable = fleet_read_pos(&fleet_shared->durable);
	uint64		lowest = PG_UINT64_MAX;
	int			next = -1;

	longpoll_wake_collected();
	dispatch_wake();
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
	if (pick_leader && next >= 0)
		SetLatch(fleet_waiters[next].latch);
}

/*
 * May a waiting backend lead a round now?  Not while a segment is missing
 * or the disk is full: the round could not complete, and trying again and
 * again would only burn CPU.  The writer runs the round once it can.
 */
static bool
walwriter_may_lead(void)
{
	return pg_atomic_read_u64(&fleet_shared->segment_wanted) == 0 &&
		pg_atomic_read_u32(&fleet_shared->writer_error) == 0;
}

/*
 * Once per process that waits: clear our slot if we exit while waiting
 * (FATAL, proc_exit), and close a segment fd we opened at the end of each
 * transaction so that no idle backend keeps a removed segment allocated.
 */
static void
walwriter_setup_callbacks(void)
{
	if (walwriter_callbacks_done)
		return;
	before_shmem_exit(walwriter_at_exit, (Datum) 0);
	if (!walwriter_am_writer)
		RegisterXactCallback(walwriter_xact_callback, NULL);
	walwriter_callbacks_done = true;
}

/*
 * Exit while waiting for durability (a FATAL such as pg_terminate_backend,
 * which does not unwind through PG_CATCH): free the slot, so that no round
 * picks a dead waiter as its next leader, and say what a cancelled wait
 * says.
 */
static void
walwriter_at_exit(int code, Datum arg)
{
	FleetWaiter *slot;

	if (MyProc == NULL || MyProc->pgprocno >= fleet_nwaiters)
		return;
	slot = &fleet_waiters[MyProc->pgprocno];
	if (pg_atomic_read_u64(&slot->wait_lsn) != 0)
	{
		pg_atomic_write_u64(&slot->wait_lsn, 0);
		walwriter_wake();
		if (walwriter_waiting)
			ereport(WARNING,
					(errcode(ERRCODE_ADMIN_SHUTDOWN),
					 errmsg("terminated the wait for durability of fleetlm messages"),
					 errdetail("The messages were appended and may still become durable.")));
	}
	walwriter_waiting = false;
	walwriter_close_segment();
}

static void
walwriter_xact_callback(XactEvent event, void *arg)
{
	if ((event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		 event == XACT_EVENT_PREPARE) && writer_fd >= 0)
		walwriter_close_segment();
}

/*
 * Make the log durable up to `end`, for a backend that waits for its
 * append.  As PostgreSQL's XLogFlush does, the backend flushes itself when
 * nobody else is flushing (taking along every record inserted so far: the
 * group commit), and otherwise sleeps until the flush in progress wakes it
 * (see walwriter_wake_waiters).  That spares the round trip through the
 * writer process on the latency path.  The timeout is only a safety net (a
 * waiter picked to lead that went away meanwhile).
 *
 * Interruptible (nothrow = false): interrupts are serviced while sleeping,
 * so cancel, statement_timeout and termination raise their error here;
 * returns true.
 *
 * nothrow: for callers that must not raise an error (the communication
 * layer).  Never calls CHECK_FOR_INTERRUPTS; returns false at once, before
 * any I/O, when the process is exiting or a cancel or termination is
 * pending, leaving those to be handled by the caller.
 */
bool
walwriter_flush_for(uint64 end, bool nothrow)
{
	return walwriter_flush_until(end, nothrow, 0) &&
		replica_wait_standby(nothrow);
}

/*
 * walwriter_flush_for with a deadline (0: none): returns false once it
 * passes with the log not durable up to end yet.
 */
bool
walwriter_flush_until(uint64 end, bool nothrow, TimestampTz deadline)
{
	FleetWaiter *slot;
	bool		done = true;

	if (fleet_read_pos(&fleet_shared->durable) >= end)
		return true;
	if (proc_exit_inprogress)
		return false;
	if (MyProc == NULL || MyProc->pgprocno >= fleet_nwaiters)
		elog(ERROR, "fleetlm: this process cannot wait for durability");
	walwriter_setup_callbacks();
	slot = &fleet_waiters[MyProc->pgprocno];
	slot->latch = MyLatch;
	pg_atomic_write_u64(&slot->wait_lsn, end);
	pg_memory_barrier();
	walwriter_waiting = true;

	PG_TRY();
	{
		while (fleet_read_pos(&fleet_shared->durable) < end)
		{
			long		timeout = WALWRITER_WAITER_POLL_MS;

			if (nothrow && (QueryCancelPending || ProcDiePending || proc_exit_inprogress))
			{
				done = false;
				break;
			}
			if (deadline != 0)
			{
				long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
																  deadline);

				if (left <= 0)
				{
					done = false;
					break;
				}
				timeout = Min(timeout, left);
			}
			if (!walwriter_may_lead())
			{
				walwriter_wake();
				timeout = Max(timeout, WALWRITER_STALLED_POLL_MS);
				if (deadline != 0)
					timeout = Min(timeout, Max(1, TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline)));
			}
			else if (LWLockConditionalAcquire(fleet_shared->write_lock, LW_EXCLUSIVE))
			{
				bool		ok = true;

				if (fleet_read_pos(&fleet_shared->durable) < end)
					ok = walwriter_round();
				LWLockRelease(fleet_shared->write_lock);
				walwriter_wake_waiters(ok);
				if (ok)
					continue;
				/* a segment is missing: the writer creates it */
				walwriter_wake();
				timeout = WALWRITER_STALLED_POLL_MS;
			}
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 timeout, FLEETLM_WAIT_EVENT);
			ResetLatch(MyLatch);
			if (!nothrow)
				CHECK_FOR_INTERRUPTS();
		}
	}
	PG_CATCH();
	{
		pg_atomic_write_u64(&slot->wait_lsn, 0);
		walwriter_waiting = false;
		PG_RE_THROW();
	}
	PG_END_TRY();
	pg_atomic_write_u64(&slot->wait_lsn, 0);
	walwriter_waiting = false;
	return done;
}

/*
 * Writer: create every segment that the unwritten part of the log needs
 * and that is missing, outside write_lock.  Returns false (writer_error
 * set) if one cannot be created.
 */
static bool
walwriter_create_segments(void)
{
	uint64		written = fleet_read_pos(&fleet_shared->written);
	uint64		inserted = fleet_read_pos(&fleet_shared->inserted);
	uint64		wanted = pg_atomic_read_u64(&fleet_shared->segment_wanted);
	uint64		last = Max(inserted, wanted + 1);

	/* after a failure, the failed segment too, even with nothing to write */
	if (pg_atomic_read_u32(&fleet_shared->writer_error) != 0)
		last = Max(last, pg_atomic_read_u64(&fleet_shared->failed_segment) + 1);

	for (uint64 seg = segment_start(written); seg < last;
		 seg += fleet_shared->segment_size)
	{
		int			err;

		if (!segment_prepare(seg, LOG, &err))
		{
			walwriter_set_error(seg, err);
			return false;
		}
		walwriter_clear_error(seg);
	}
	return true;
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

	walwriter_am_writer = true;
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

		if (target > written ||
			pg_atomic_read_u64(&fleet_shared->segment_wanted) != 0 ||
			pg_atomic_read_u32(&fleet_shared->writer_error) != 0)
		{
			bool		ok;

			/* segments first, outside write_lock: off the latency path */
			ok = walwriter_create_segments();
			if (ok)
			{
				pg_atomic_write_u64(&fleet_shared->segment_wanted, 0);
				LWLockAcquire(fleet_shared->write_lock, LW_EXCLUSIVE);
				ok = walwriter_round();
				LWLockRelease(fleet_shared->write_lock);
				walwriter_wake_waiters(ok);
				/* more may have arrived while we wrote: go again at once */
				if (ok && fleet_read_pos(&fleet_shared->inserted) >
					fleet_read_pos(&fleet_shared->written))
					continue;
			}
			if (!ok)
			{
				/* a segment could not be created: wait a second and retry */
				(void) WaitLatch(MyLatch, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								 1000L, FLEETLM_WAIT_EVENT);
				CHECK_FOR_INTERRUPTS();
				if (ShutdownRequestPending)
					break;
				continue;
			}
		}

		if (ShutdownRequestPending)
			break;

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000L, FLEETLM_WAIT_EVENT);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}

	walwriter_close_segment();
	/* exit code 1: restart us unless the postmaster is shutting down */
	proc_exit(1);
}

/*-------------------------------------------------------------------------
 *
 * replica.c
 *	  fleetlm's records in PostgreSQL's WAL (fleetlm.replication = on), so
 *	  that streaming standbys, base backups, PITR and archive recovery hold
 *	  the fleetlm log too; the redo that rebuilds it; the wait for a
 *	  synchronous standby; and what a standby and a promotion do.
 *
 * On the primary.  A flush round writes and fdatasyncs its bytes to the
 * fleetlm WAL, then inserts the same bytes into PostgreSQL's WAL as
 * XLOG_FLEET_CHUNK records of the custom resource manager "fleetlm" (id
 * FLEET_RMGR_ID), XLogFlushes them, and only then publishes `durable`.
 * Rounds run one at a time under write_lock and in log order, so
 * PostgreSQL's WAL carries the fleetlm log in order: a standby never holds
 * a later record without the earlier ones.  Because a round writes its
 * bytes before it logs them, every chunk logged before a checkpoint's redo
 * pointer is already in the fleetlm files when pg_basebackup copies them.
 * The applier logs XLOG_FLEET_APPLIED after each commit and before it
 * publishes `applied`, so the standby frees ring space in the same order
 * as the primary.  An append that waits for durability then waits for a
 * synchronous standby as a commit does (replica_wait_standby).
 *
 * Redo.  In plain crash recovery the redo does nothing: the fleetlm files
 * already hold every chunk that reached PostgreSQL's WAL (the round wrote
 * and synced them first), and the applier's own recovery reads them.  In
 * archive recovery (a standby, a restored base backup, PITR) the redo, run
 * by the startup process, writes each chunk into this server's fleetlm
 * files at its own positions (fdatasynced), and into its shared memory as
 * an append would: the ring, the session entries, `durable`, and wakes
 * long-pollers.  Hot-standby readers use the same read path as on the
 * primary.
 *
 * A standby's ring starts empty.  The first chunk it replays starts at
 * some position `base`; the records between the table's applied position
 * and base are only in the files.  Until the primary's applied position
 * (replayed from XLOG_FLEET_APPLIED) reaches base, the state is UNSYNCED
 * and session_find_live hides every entry, so readers use the tables
 * alone: an older but consistent view.  Then the state is SYNCED.  A ring
 * or session table too small for what the primary holds, or a hole in the
 * replicated log (the primary crashed and its recovery applied records
 * that never reached PostgreSQL's WAL), starts the view over at the next
 * chunk the same way.
 *
 * At the end of archive recovery (rm_cleanup) the fleetlm log is cut
 * after the last complete group replayed, so PITR yields the log as of
 * the target, not what the copied files held beyond it.  Promotion then
 * starts the applier, whose recovery empties the standby's session table
 * (replica_promoted) and replays the log from the files as after any
 * restart.
 *
 * Locking rules
 * -------------
 * The redo runs in the startup process only; its static variables are
 * that process's view of the replicated log.  It changes the positions
 * and the ring holding write_lock (as a flush round does), publishes
 * `durable` through longpoll_publish_durable (write_lock -> reclaim_lock),
 * and moves `applied` under reclaim_lock exclusively.  Session entries
 * are changed under their partition lock; session_clear takes all of them.
 * No lock is held while another is awaited in a different order than
 * write_lock -> partition lock and write_lock -> reclaim_lock.
 *
 * src/replica.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <unistd.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "access/xloginsert.h"
#include "access/xlogreader.h"
#include "miscadmin.h"
#include "replication/syncrep.h"
#include "replication/walsender.h"
#include "replication/walsender_private.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"

#include "compat.h"
#include "fleetlm.h"
#include "longpoll.h"
#include "record.h"
#include "replica.h"
#include "ring.h"
#include "segment.h"
#include "session.h"
#include "shmem.h"

/* largest part of a round logged as one WAL record */
#define REPLICA_MAX_CHUNK	((uint64) 8 * 1024 * 1024)

/* poll interval of the wait for a synchronous standby that cannot sleep
 * in SyncRepWaitForLSN (the communication layer's wait) */
#define REPLICA_SYNC_POLL_MS	1

bool		fleetlm_replication = false;

/* the startup process's view of the replicated log (see file header) */
static uint64 replica_base = 0; /* the ring holds every record from here */
static uint64 replica_bytes_end = 0;	/* ... up to here (bytes) */
static uint64 replica_parse_pos = 0;	/* next record to enter */
static uint64 replica_group_end = 0;	/* end of the last complete group */
static uint64 replica_applied = 0;	/* the primary's applied position */
static bool replica_replayed = false;	/* a chunk was replayed */
static int	replica_fd = -1;	/* open segment of the redo */
static uint64 replica_fd_seg = 0;

static void replica_redo(XLogReaderState *record);
static void replica_desc(StringInfo buf, XLogReaderState *record);
static const char *replica_identify(uint8 info);
static void replica_startup(void);
static void replica_cleanup(void);
static bool replica_archive_recovery(void);
static void replica_close_fd(void);
static void replica_adopt(uint64 wal_id);
static void replica_write_files(uint64 start, uint64 end, const char *bytes);
static void replica_reset(uint64 pos);
static void replica_redo_chunk(const xl_fleet_chunk *xlrec, const char *bytes);
static void replica_redo_applied(const xl_fleet_applied *xlrec);
static bool replica_enter_records(uint64 *group_end);
static void replica_publish(uint64 group_end);

static const RmgrData replica_rmgr = {
	.rm_name = FLEET_RMGR_NAME,
	.rm_redo = replica_redo,
	.rm_desc = replica_desc,
	.rm_identify = replica_identify,
	.rm_startup = replica_startup,
	.rm_cleanup = replica_cleanup,
	.rm_mask = NULL,
	.rm_decode = NULL,
};

/*
 * Register the resource manager; from _PG_init while preloading.  Always,
 * whatever fleetlm.replication says: a server must be able to replay the
 * records a primary with replication on wrote.
 */
void
replica_register(void)
{
	RegisterCustomRmgr(FLEET_RMGR_ID, (RmgrData *) &replica_rmgr);
}

/*
 * Log the bytes [from, to) a flush round has just written and synced, and
 * flush PostgreSQL's WAL up to them.  Caller holds write_lock, so rounds
 * log in log order, and [from, to) cannot be overwritten meanwhile.
 */
void
replica_log_chunk(uint64 from, uint64 to)
{
	uint64		ringsize = fleet_shared->ring_size;
	uint64		applied = fleet_read_pos(&fleet_shared->applied);
	XLogRecPtr	ptr = InvalidXLogRecPtr;

	while (from < to)
	{
		xl_fleet_chunk xlrec;
		uint64		len = Min(to - from, REPLICA_MAX_CHUNK);
		uint64		off = from % ringsize;
		uint64		first = Min(len, ringsize - off);

		xlrec.wal_id = fleet_shared->wal_id;
		xlrec.start = from;
		xlrec.end = from + len;
		xlrec.applied = applied;
		ring_prepare(from, (Size) len);
		XLogBeginInsert();
		XLogRegisterData((char *) &xlrec, sizeof(xlrec));
		XLogRegisterData(fleet_ring + off, (int) first);
		if (first < len)
			XLogRegisterData(fleet_ring, (int) (len - first));
		ptr = XLogInsert(FLEET_RMGR_ID, XLOG_FLEET_CHUNK);
		from += len;
	}
	XLogFlush(ptr);
	pg_atomic_write_u64(&fleet_shared->durable_xlog, ptr);
}

/*
 * Log that the applier committed everything below `applied`.  Called
 * after the commit and before `applied` is published, so that a standby
 * frees ring space no earlier than the primary did.
 */
void
replica_log_applied(uint64 applied)
{
	xl_fleet_applied xlrec;

	if (!fleetlm_replication)
		return;
	xlrec.wal_id = fleet_shared->wal_id;
	xlrec.applied = applied;
	XLogBeginInsert();
	XLogRegisterData((char *) &xlrec, sizeof(xlrec));
	(void) XLogInsert(FLEET_RMGR_ID, XLOG_FLEET_APPLIED);
}

/*
 * After the log is durable up to a waiter's end: wait until the
 * synchronous standbys confirmed it too, as a commit does.  The record
 * that carried `durable` is at or after the waiter's own, so its WAL end
 * covers it.
 *
 * Interruptible: SyncRepWaitForLSN, whose cancel gives the commit's
 * WARNING and returns (the messages are durable here).  nothrow: for the
 * communication layer, which may not raise or report anything; polls the
 * confirmed position (ending, as commits' waits do, when no synchronous
 * standby is configured any more) and returns false at once on a pending
 * cancel or termination.
 */
bool
replica_wait_standby(bool nothrow)
{
	XLogRecPtr	ptr;
	int			mode;

	if (!fleetlm_replication || !SyncRepRequested())
		return true;
	pg_read_barrier();
	ptr = (XLogRecPtr) pg_atomic_read_u64(&fleet_shared->durable_xlog);
	if (ptr == InvalidXLogRecPtr)
		return true;
	if (!nothrow)
	{
		/* as at commit: it checks for cancel and termination itself */
		HOLD_INTERRUPTS();
		SyncRepWaitForLSN(ptr, true);
		RESUME_INTERRUPTS();
		return true;
	}

	mode = synchronous_commit == SYNCHRONOUS_COMMIT_REMOTE_WRITE ? SYNC_REP_WAIT_WRITE :
		synchronous_commit == SYNCHRONOUS_COMMIT_REMOTE_APPLY ? SYNC_REP_WAIT_APPLY :
		SYNC_REP_WAIT_FLUSH;
	for (;;)
	{
		bool		done;

		/* released, as commits are, when the standbys are configured away */
		LWLockAcquire(SyncRepLock, LW_SHARED);
		done = !FLEETLM_SYNC_STANDBYS_DEFINED() || WalSndCtl->lsn[mode] >= ptr;
		LWLockRelease(SyncRepLock);
		if (done)
			return true;
		if (QueryCancelPending || ProcDiePending || proc_exit_inprogress)
			return false;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 REPLICA_SYNC_POLL_MS, FLEETLM_WAIT_EVENT);
		ResetLatch(MyLatch);
	}
}

/*
 * Writes are refused at once on a standby (hot standby), with the SQLSTATE
 * of a write in a read-only transaction.
 */
void
fleetlm_require_primary(const char *function)
{
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot execute fleetlm.%s() on a standby", function),
				 errhint("fleetlm writes go to the primary; a standby serves reads.")));
}

/*
 * Start of the applier's recovery: after a promotion, forget the
 * standby's view (recovery rebuilds everything from the files and the
 * tables) and say what the promoted or restored log holds.
 */
void
replica_promoted(void)
{
	if (pg_atomic_read_u32(&fleet_shared->replica_state) != FLEET_REPLICA_NONE)
	{
		session_clear();
		pg_atomic_write_u32(&fleet_shared->replica_state, FLEET_REPLICA_NONE);
		/* chain walks in progress end before recovery rewrites the ring */
		LWLockAcquire(fleet_shared->reclaim_lock, LW_EXCLUSIVE);
		LWLockRelease(fleet_shared->reclaim_lock);
	}
	if (pg_atomic_read_u32(&fleet_shared->replica_seen) == 0)
		return;
	pg_atomic_write_u32(&fleet_shared->replica_seen, 0);
	if (fleetlm_replication)
		ereport(LOG,
				(errmsg("fleetlm: this server ran archive recovery; recovering the fleetlm log it replayed")));
	else
		ereport(WARNING,
				(errmsg("fleetlm: this server was promoted or restored from a backup with fleetlm.replication = off"),
				 errdetail("Messages that the old primary acknowledged but had not yet applied to fleetlm.messages are not on this server; their seqs may be handed out again to other messages."),
				 errhint("Set fleetlm.replication = on on the primary and its standbys so that the fleetlm log travels in PostgreSQL's WAL.")));
}

/* ----------------------------------------------------------------
 * Redo (startup process)
 * ----------------------------------------------------------------
 */

/*
 * Archive recovery (a standby, a base backup's backup_label, PITR)?  Plain
 * crash recovery finds every logged chunk in the fleetlm files already.
 */
static bool
replica_archive_recovery(void)
{
	return ArchiveRecoveryRequested || InArchiveRecovery;
}

static void
replica_startup(void)
{
	if (replica_archive_recovery())
		pg_atomic_write_u32(&fleet_shared->replica_seen, 1);
}

/*
 * End of recovery: cut the fleetlm log after the last complete group the
 * redo wrote, so that the log is what PostgreSQL's WAL said up to the
 * recovery target.
 */
static void
replica_cleanup(void)
{
	replica_close_fd();
	if (!replica_replayed)
		return;
	ereport(LOG,
			(errmsg("fleetlm: the replicated log ends at position %llu",
					(unsigned long long) replica_group_end)));
	segment_truncate_after(replica_group_end);
}

static void
replica_redo(XLogReaderState *record)
{
	uint8		info = XLogRecGetInfo(record) & ~XLR_INFO_MASK;
	char	   *data = XLogRecGetData(record);

	if (!replica_archive_recovery())
		return;
	pg_atomic_write_u32(&fleet_shared->replica_seen, 1);
	switch (info)
	{
		case XLOG_FLEET_CHUNK:
			{
				xl_fleet_chunk xlrec;

				memcpy(&xlrec, data, sizeof(xlrec));
				if (XLogRecGetDataLen(record) != sizeof(xlrec) + (xlrec.end - xlrec.start))
					elog(PANIC, "fleetlm: chunk record of %u bytes for positions %llu..%llu",
						 (unsigned) XLogRecGetDataLen(record),
						 (unsigned long long) xlrec.start,
						 (unsigned long long) xlrec.end);
				replica_redo_chunk(&xlrec, data + sizeof(xlrec));
				break;
			}
		case XLOG_FLEET_APPLIED:
			{
				xl_fleet_applied xlrec;

				memcpy(&xlrec, data, sizeof(xlrec));
				replica_redo_applied(&xlrec);
				break;
			}
		default:
			elog(PANIC, "fleetlm redo: unknown op code %u", info);
	}
}

static void
replica_close_fd(void)
{
	if (replica_fd >= 0)
		close(replica_fd);
	replica_fd = -1;
}

/*
 * The chunk belongs to the primary's WAL `wal_id`: make the directory
 * hold that identity, and start the in-memory view over if it held
 * another (the primary's extension was created anew).
 */
static void
replica_adopt(uint64 wal_id)
{
	if (fleet_shared->wal_id == wal_id)
		return;
	replica_close_fd();
	(void) segment_adopt_identity(wal_id);
	if (fleet_shared->wal_id != 0 &&
		pg_atomic_read_u32(&fleet_shared->replica_state) != FLEET_REPLICA_NONE)
	{
		session_clear();
		pg_atomic_write_u32(&fleet_shared->replica_state, FLEET_REPLICA_NONE);
	}
	fleet_shared->wal_id = wal_id;
}

/*
 * Write the chunk's bytes into the segment files at their positions,
 * creating missing segments, and fdatasync them.
 */
static void
replica_write_files(uint64 start, uint64 end, const char *bytes)
{
	uint64		segsize = fleet_shared->segment_size;
	uint64		pos = start;

	while (pos < end)
	{
		uint64		seg = segment_start(pos);
		uint64		n = Min(end, seg + segsize) - pos;
		char		path[MAXPGPATH];
		ssize_t		w;

		segment_path(seg, path, sizeof(path));
		if (replica_fd >= 0 && replica_fd_seg != seg)
		{
			if (pg_fdatasync(replica_fd) != 0)
				ereport(PANIC,
						(errcode_for_file_access(),
						 errmsg("could not fdatasync fleetlm WAL segment of position %llu: %m",
								(unsigned long long) replica_fd_seg)));
			replica_close_fd();
		}
		if (replica_fd < 0)
		{
			int			err;

			replica_fd = segment_open(seg, &err);
			if (replica_fd < 0 && err == ENOENT)
			{
				(void) segment_prepare(seg, ERROR, &err);
				replica_fd = segment_open(seg, &err);
			}
			if (replica_fd < 0)
			{
				errno = err;
				ereport(ERROR,
						(errcode_for_file_access(),
						 errmsg("could not open fleetlm WAL segment \"%s\": %m", path)));
			}
			replica_fd_seg = seg;
		}
		errno = 0;
		w = pg_pwrite(replica_fd, bytes + (pos - start), (size_t) n, (off_t) (pos - seg));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
		{
			if (errno == 0)
				errno = ENOSPC;
			ereport(PANIC,
					(errcode_for_file_access(),
					 errmsg("could not write fleetlm WAL segment \"%s\" at offset %llu: %m",
							path, (unsigned long long) (pos - seg))));
		}
		pos += (uint64) w;
	}
	if (replica_fd >= 0 && pg_fdatasync(replica_fd) != 0)
		ereport(PANIC,
				(errcode_for_file_access(),
				 errmsg("could not fdatasync fleetlm WAL segment of position %llu: %m",
						(unsigned long long) replica_fd_seg)));
}

/*
 * Start the in-memory view over at `pos`: no entries, an empty ring, and
 * readers on the tables alone until the primary's applied position
 * reaches pos.  Caller holds write_lock.
 */
static void
replica_reset(uint64 pos)
{
	session_clear();
	pg_atomic_write_u32(&fleet_shared->replica_state, FLEET_REPLICA_UNSYNCED);
	replica_base = replica_bytes_end = replica_parse_pos = replica_group_end = pos;
	LWLockAcquire(fleet_shared->reclaim_lock, LW_EXCLUSIVE);
	fleet_write_pos(&fleet_shared->applied, Max(replica_applied, pos));
	fleet_write_pos(&fleet_shared->durable, pos);
	fleet_write_pos(&fleet_shared->written, pos);
	fleet_write_pos(&fleet_shared->inserted, pos);
	LWLockRelease(fleet_shared->reclaim_lock);
	if (replica_applied >= pos)
		pg_atomic_write_u32(&fleet_shared->replica_state, FLEET_REPLICA_SYNCED);
}

/*
 * Enter the complete records in the ring past replica_parse_pos into the
 * session table; *group_end gets the end of the last complete group.
 * Returns false if the session table is full.
 */
static bool
replica_enter_records(uint64 *group_end)
{
	uint64		pos = replica_parse_pos;

	*group_end = replica_group_end;
	while (pos + sizeof(FleetRecordHeader) <= replica_bytes_end)
	{
		FleetRecordHeader hdr;
		char		id[FLEETLM_ID_MAXLEN + 1];
		int			len;
		uint64		next;

		ring_read_header(pos, &hdr);
		next = pos + FLEET_REC_ALIGN(hdr.total_len);
		if (hdr.lsn != pos || next > replica_bytes_end)
			break;
		len = Min(hdr.session_len, FLEETLM_ID_MAXLEN);
		ring_read(pos + record_session_offset(&hdr), id, len);
		id[len] = '\0';
		if (!session_replay(id, pos, hdr.seq, hdr.type == FLEET_REC_DELETE_SESSION))
			return false;
		if ((hdr.flags & FLEET_RECF_MORE) == 0)
			*group_end = next;
		pos = next;
	}
	replica_parse_pos = pos;
	return true;
}

/*
 * Publish the complete groups up to group_end as inserted, written and
 * durable, and find the long-pollers to wake.  Caller holds write_lock.
 */
static void
replica_publish(uint64 group_end)
{
	uint64		from = fleet_read_pos(&fleet_shared->durable);

	if (group_end <= from)
		return;
	replica_group_end = group_end;
	fleet_write_pos(&fleet_shared->inserted, group_end);
	fleet_write_pos(&fleet_shared->written, group_end);
	longpoll_publish_durable(from, group_end);
}

/*
 * Redo of XLOG_FLEET_CHUNK: the files, then the ring and session entries.
 */
static void
replica_redo_chunk(const xl_fleet_chunk *xlrec, const char *bytes)
{
	uint64		start = xlrec->start;
	uint64		end = xlrec->end;
	uint64		ringsize = fleet_shared->ring_size;
	uint64		from;
	uint64		group_end;

	replica_adopt(xlrec->wal_id);
	replica_write_files(start, end, bytes);
	replica_replayed = true;

	LWLockAcquire(fleet_shared->write_lock, LW_EXCLUSIVE);
	if (pg_atomic_read_u32(&fleet_shared->replica_state) == FLEET_REPLICA_NONE)
	{
		replica_applied = xlrec->applied;
		replica_reset(start);
	}
	else if (start > replica_bytes_end)
	{
		ereport(LOG,
				(errmsg("fleetlm: the replicated log continues at position %llu after %llu; reading the tables alone until the primary applies past it",
						(unsigned long long) start,
						(unsigned long long) replica_bytes_end)));
		replica_reset(start);
	}

	from = Max(start, replica_bytes_end);
	if (end > from)
	{
		uint64		floor = Max(fleet_read_pos(&fleet_shared->applied), replica_base);

		if (end - floor > ringsize)
		{
			ereport(LOG,
					(errmsg("fleetlm: fleetlm.wal_buffers is too small for the replicated log; reading the tables alone until the primary applies past position %llu",
							(unsigned long long) (end - from > ringsize ? end : from))));
			replica_reset(end - from > ringsize ? end : from);
		}
		if (end > replica_bytes_end)
		{
			from = replica_bytes_end;
			ring_prepare(from, (Size) (end - from));
			ring_write(from, bytes + (from - start), (Size) (end - from));
			replica_bytes_end = end;
		}
		if (!replica_enter_records(&group_end))
		{
			ereport(LOG,
					(errmsg("fleetlm: fleetlm.max_active_sessions is too small for the replicated log; reading the tables alone until the primary applies past position %llu",
							(unsigned long long) end)));
			replica_reset(end);
			group_end = end;
		}
		replica_publish(group_end);
	}
	LWLockRelease(fleet_shared->write_lock);
	longpoll_wake_collected();
}

/*
 * Redo of XLOG_FLEET_APPLIED: free ring space and entries as the primary
 * did, and serve the ring once it holds everything the table lacks.
 */
static void
replica_redo_applied(const xl_fleet_applied *xlrec)
{
	uint64		applied = xlrec->applied;
	uint64		old_seg;

	if (xlrec->wal_id != fleet_shared->wal_id ||
		pg_atomic_read_u32(&fleet_shared->replica_state) == FLEET_REPLICA_NONE ||
		applied <= replica_applied)
		return;
	replica_applied = applied;
	old_seg = segment_start(fleet_read_pos(&fleet_shared->applied));

	LWLockAcquire(fleet_shared->write_lock, LW_EXCLUSIVE);
	if (applied > replica_group_end)
	{
		/* applied past what was replicated: the tables have all of it */
		replica_reset(applied);
	}
	else
	{
		LWLockAcquire(fleet_shared->reclaim_lock, LW_EXCLUSIVE);
		fleet_write_pos(&fleet_shared->applied, Max(applied, replica_base));
		LWLockRelease(fleet_shared->reclaim_lock);
		if (applied >= replica_base)
			pg_atomic_write_u32(&fleet_shared->replica_state, FLEET_REPLICA_SYNCED);
	}
	LWLockRelease(fleet_shared->write_lock);

	(void) session_evict(fleet_read_pos(&fleet_shared->applied), true);
	if (segment_start(fleet_read_pos(&fleet_shared->applied)) != old_seg)
	{
		replica_close_fd();
		segment_maintain(fleet_read_pos(&fleet_shared->applied), replica_group_end);
	}
}

static void
replica_desc(StringInfo buf, XLogReaderState *record)
{
	uint8		info = XLogRecGetInfo(record) & ~XLR_INFO_MASK;
	char	   *data = XLogRecGetData(record);

	if (info == XLOG_FLEET_CHUNK)
	{
		xl_fleet_chunk xlrec;

		memcpy(&xlrec, data, sizeof(xlrec));
		appendStringInfo(buf, "wal %016llX positions %llu..%llu applied %llu",
						 (unsigned long long) xlrec.wal_id,
						 (unsigned long long) xlrec.start,
						 (unsigned long long) xlrec.end,
						 (unsigned long long) xlrec.applied);
	}
	else if (info == XLOG_FLEET_APPLIED)
	{
		xl_fleet_applied xlrec;

		memcpy(&xlrec, data, sizeof(xlrec));
		appendStringInfo(buf, "wal %016llX applied %llu",
						 (unsigned long long) xlrec.wal_id,
						 (unsigned long long) xlrec.applied);
	}
}

static const char *
replica_identify(uint8 info)
{
	switch (info & ~XLR_INFO_MASK)
	{
		case XLOG_FLEET_CHUNK:
			return "CHUNK";
		case XLOG_FLEET_APPLIED:
			return "APPLIED";
	}
	return NULL;
}

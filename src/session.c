/*-------------------------------------------------------------------------
 *
 * session.c
 *	  The partitioned shared session table: lookup, load from the tables on
 *	  a miss, eviction of idle, fully applied sessions, and the eviction
 *	  marks that guard readers of the tables against a racing eviction.
 *
 * See session.h for the locking rules and the invariant that makes a load
 * from the tables correct.
 *
 * src/session.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "miscadmin.h"
#include "storage/shmem.h"
#include "utils/hsearch.h"
#include "utils/snapmgr.h"

#include "fleetlm.h"
#include "record.h"
#include "replica.h"
#include "ring.h"
#include "session.h"
#include "shmem.h"
#include "tables.h"

/* Sessions idle this long are evicted once all their records are applied */
#define FLEET_SESSION_IDLE_MS	10000

static HTAB *session_htab = NULL;

static bool session_deletion_applied(FleetSession *entry);
static void session_fill_entry(FleetSession *entry, const FleetSessionInfo *info);
static void session_wait_for_eviction(void);

Size
session_shmem_size(void)
{
	return hash_estimate_size(fleetlm_max_active_sessions, sizeof(FleetSession));
}

/*
 * Create or attach to the session table (caller holds AddinShmemInitLock).
 */
void
session_shmem_init(void)
{
	HASHCTL		info;

	info.keysize = FLEETLM_ID_MAXLEN + 1;
	info.entrysize = sizeof(FleetSession);
	info.num_partitions = FLEET_SESSION_PARTITIONS;
	session_htab = ShmemInitHash("fleetlm sessions",
								 fleetlm_max_active_sessions,
								 fleetlm_max_active_sessions,
								 &info,
								 HASH_ELEM | HASH_STRINGS | HASH_PARTITION);
}

/*
 * The hash code of session `id`, which selects its partition lock; ids
 * longer than a key hash as their first FLEETLM_ID_MAXLEN bytes.
 */
uint32
session_hash_code(const char *id)
{
	char		key[FLEETLM_ID_MAXLEN + 1];

	/* hash the key exactly as dynahash will compare it */
	strlcpy(key, id, sizeof(key));
	return get_hash_value(session_htab, key);
}

LWLock *
session_partition_lock(uint32 hashcode)
{
	return fleet_shared->partition_locks[hashcode % FLEET_SESSION_PARTITIONS];
}

/*
 * The entry of session `id`, or NULL; caller holds its partition lock.
 */
FleetSession *
session_find(const char *id, uint32 hashcode)
{
	return (FleetSession *) hash_search_with_hash_value(session_htab, id,
														hashcode, HASH_FIND,
														NULL);
}

/*
 * Has the applier carried out the deletion of this entry's session?  Then
 * the tables are the truth for the id (it may even belong to a new session
 * by now).
 */
static bool
session_deletion_applied(FleetSession *entry)
{
	return entry->deleted &&
		entry->last_lsn < fleet_read_pos(&fleet_shared->applied);
}

/*
 * Like session_find, but an entry of a deleted session whose deletion the
 * applier has already carried out counts as absent.
 */
FleetSession *
session_find_live(const char *id, uint32 hashcode)
{
	FleetSession *entry;

	/* a standby whose ring lacks records below the table: tables alone */
	if (unlikely(pg_atomic_read_u32(&fleet_shared->replica_state) ==
				 FLEET_REPLICA_UNSYNCED))
		return NULL;
	entry = session_find(id, hashcode);
	if (entry != NULL && session_deletion_applied(entry))
		return NULL;
	return entry;
}

/*
 * Remove an entry; caller holds its partition lock exclusively.  Counts as
 * an eviction, so a loader whose snapshot predates the removal retries.
 */
void
session_remove(FleetSession *entry)
{
	char		id[FLEETLM_ID_MAXLEN + 1];

	strlcpy(id, entry->id, sizeof(id));
	pg_atomic_fetch_add_u64(&fleet_shared->eviction_count, 1);
	hash_search(session_htab, id, HASH_REMOVE, NULL);
}

long
session_count(void)
{
	return hash_get_num_entries(session_htab);
}

/*
 * A mark to take before reading the tables for a session that has no
 * entry.  The entry may be evicted while the read runs, with records the
 * read's snapshot does not see yet; session_evicted_since(mark) after the
 * read says whether that can have happened, and the reader then retries.
 * The barrier keeps the read of the tables after the read of the mark.
 */
uint64
session_eviction_mark(void)
{
	uint64		mark = pg_atomic_read_u64(&fleet_shared->eviction_count);

	pg_memory_barrier();
	return mark;
}

/*
 * Has an eviction happened since session_eviction_mark() returned mark?
 */
bool
session_evicted_since(uint64 mark)
{
	return pg_atomic_read_u64(&fleet_shared->eviction_count) != mark;
}

/*
 * The error for a session that does not exist (or no longer does).
 */
void
session_error_missing(const char *id, bool deleted)
{
	if (deleted)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("fleetlm session \"%s\" has been deleted", id)));
	ereport(ERROR,
			(errcode(ERRCODE_NO_DATA_FOUND),
			 errmsg("fleetlm session \"%s\" does not exist", id)));
}

/*
 * Read session `id` from the tables: its parties and its largest applied
 * seq.  Returns false if the session does not exist.  For an append, a
 * session created by the current, uncommitted transaction is an error: the
 * append would outlive a rollback of its session.
 *
 * The read (tables.c: the two primary keys, no SPI) runs on a fresh
 * snapshot, never the caller's: a REPEATABLE READ caller, or a statement
 * older than the applier's last commit, would see a stale max(seq) and hand
 * out a seq twice.
 */
bool
session_load_info(const char *id, FleetSessionInfo *info, bool for_append)
{
	TransactionId xmin;

	/* make our own earlier statements visible to the fresh snapshot */
	CommandCounterIncrement();
	if (!tables_session_info(id, GetLatestSnapshot(), info, &xmin))
		return false;
	if (for_append && TransactionIdIsCurrentTransactionId(xmin))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("fleetlm session \"%s\" was created in the current transaction", id),
				 errdetail("Appends are durable at once and are not rolled back with the transaction."),
				 errhint("Commit the transaction that creates the session before appending to it.")));
	return true;
}

/*
 * Initialize a new entry from what session_load_info read: no record of
 * the session is in the ring yet.
 */
static void
session_fill_entry(FleetSession *entry, const FleetSessionInfo *info)
{
	strlcpy(entry->user_id, info->user_id, sizeof(entry->user_id));
	strlcpy(entry->agent_id, info->agent_id, sizeof(entry->agent_id));
	entry->deleted = false;
	entry->last_seq = info->last_seq;
	entry->last_lsn = 0;
	entry->last_used = GetCurrentTimestamp();
}

/*
 * The table is full: ask the applier to evict and wait for one of its
 * cycles (it broadcasts applied_cv after applying and after evicting).
 */
static void
session_wait_for_eviction(void)
{
	Latch	   *applier = fleet_shared->applier_latch;

	if (applier)
		SetLatch(applier);
	ConditionVariablePrepareToSleep(&fleet_shared->applied_cv);
	(void) ConditionVariableTimedSleep(&fleet_shared->applied_cv,
									   fleetlm_flush_interval_ms + 100,
									   FLEETLM_WAIT_EVENT);
	ConditionVariableCancelSleep();
}

/*
 * The entry of session `id`, loaded from the tables if it has none.
 * Returns with the partition lock held exclusively.  Unknown and deleted
 * sessions are errors (raised with no lock held).
 */
FleetSession *
session_acquire(const char *id, uint32 hashcode)
{
	LWLock	   *lock = session_partition_lock(hashcode);
	TimestampTz full_since = 0;
	bool		was_deleted = false;

	for (;;)
	{
		FleetSession *entry;
		FleetSessionInfo info;
		uint64		mark;
		bool		found;

		LWLockAcquire(lock, LW_EXCLUSIVE);
		entry = session_find(id, hashcode);
		if (entry != NULL && session_deletion_applied(entry))
		{
			/* the deletion is in the tables now; they decide from here */
			session_remove(entry);
			entry = NULL;
			was_deleted = true;
		}
		if (entry != NULL)
		{
			if (entry->deleted)
			{
				LWLockRelease(lock);
				session_error_missing(id, true);
			}
			return entry;
		}
		LWLockRelease(lock);

		/*
		 * Miss.  Read the tables; an eviction that raced with the read may
		 * have removed records our snapshot did not yet see, so retry if any
		 * happened since before the snapshot.
		 */
		mark = session_eviction_mark();
		if (!session_load_info(id, &info, true))
			session_error_missing(id, was_deleted);

		LWLockAcquire(lock, LW_EXCLUSIVE);
		entry = session_find(id, hashcode);
		if (entry != NULL)
		{
			/* another backend loaded it first: use theirs */
			LWLockRelease(lock);
			continue;
		}
		if (session_evicted_since(mark))
		{
			LWLockRelease(lock);
			continue;
		}
		entry = NULL;
		if (session_count() < fleetlm_max_active_sessions)
			entry = (FleetSession *) hash_search_with_hash_value(session_htab, id,
																 hashcode,
																 HASH_ENTER_NULL,
																 &found);
		if (entry == NULL)
		{
			LWLockRelease(lock);

			/*
			 * Wait for the applier to apply and evict, a few of its cycles
			 * and at least a second, then give up: never wait unbounded.
			 */
			if (full_since == 0)
				full_since = GetCurrentTimestamp();
			if (!TimestampDifferenceExceeds(full_since, GetCurrentTimestamp(),
											Max(1000, 3 * fleetlm_flush_interval_ms + 300)))
			{
				session_wait_for_eviction();
				continue;
			}
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("too many active fleetlm sessions"),
					 errdetail("All %d entries of the session table hold sessions with unapplied or recent messages.",
							   fleetlm_max_active_sessions),
					 errhint("Increase fleetlm.max_active_sessions.")));
		}
		Assert(!found);
		session_fill_entry(entry, &info);
		return entry;
	}
}

/*
 * The largest durable seq of a session whose entry we hold the partition
 * lock of: last_seq, less the newest records that are not yet durable.
 */
int64
session_durable_last_seq(FleetSession *entry, uint64 durable, uint64 applied)
{
	int64		seq = entry->last_seq;
	RingChain	chain;
	uint64		lsn;
	FleetRecordHeader hdr;

	if (!ring_record_live(entry->last_lsn, applied))
		return seq;

	ring_chain_begin(&chain, entry->last_lsn);
	while (ring_chain_next(&chain, &lsn, &hdr))
	{
		if (ring_record_durable(lsn, &hdr, durable))
		{
			seq = hdr.seq;
			break;
		}
		seq = hdr.seq - 1;
	}
	ring_chain_end(&chain);
	return seq;
}

/*
 * The redo of a replicated record of session `id` (at `lsn`, with `seq`),
 * on a standby: make the session's entry point at it, as an append would
 * have.  The parties are not known (no query runs in the startup process)
 * and not needed: a standby does not append, and promotion empties the
 * table.  Returns false if the table is full even after evicting every
 * entry whose records are applied.
 */
bool
session_replay(const char *id, uint64 lsn, int64 seq, bool deleted)
{
	uint32		hashcode = session_hash_code(id);
	LWLock	   *lock = session_partition_lock(hashcode);

	for (int attempt = 0; attempt < 2; attempt++)
	{
		FleetSession *entry;
		bool		found;

		LWLockAcquire(lock, LW_EXCLUSIVE);
		entry = (FleetSession *) hash_search_with_hash_value(session_htab, id,
															 hashcode,
															 HASH_ENTER_NULL,
															 &found);
		if (entry != NULL)
		{
			if (!found)
			{
				entry->user_id[0] = '\0';
				entry->agent_id[0] = '\0';
			}
			entry->deleted = deleted;
			entry->last_seq = seq;
			entry->last_lsn = lsn;
			entry->last_used = GetCurrentTimestamp();
			LWLockRelease(lock);
			return true;
		}
		LWLockRelease(lock);
		(void) session_evict(fleet_read_pos(&fleet_shared->applied), true);
	}
	return false;
}

/*
 * Remove every entry (a standby's, at promotion or when its view of the
 * log starts over).  Counts as an eviction.
 */
void
session_clear(void)
{
	HASH_SEQ_STATUS status;
	FleetSession *entry;
	int			i;

	for (i = 0; i < FLEET_SESSION_PARTITIONS; i++)
		LWLockAcquire(fleet_shared->partition_locks[i], LW_EXCLUSIVE);
	hash_seq_init(&status, session_htab);
	while ((entry = (FleetSession *) hash_seq_search(&status)) != NULL)
		hash_search(session_htab, entry->id, HASH_REMOVE, NULL);
	pg_atomic_fetch_add_u64(&fleet_shared->eviction_count, 1);
	for (i = FLEET_SESSION_PARTITIONS - 1; i >= 0; i--)
		LWLockRelease(fleet_shared->partition_locks[i]);
}

/*
 * Evict sessions whose records are all applied and that are idle (or all
 * such sessions when `aggressive`).  Called by the applier after it
 * published `applied`.  Returns the number evicted.
 */
uint64
session_evict(uint64 applied, bool aggressive)
{
	HASH_SEQ_STATUS status;
	FleetSession *entry;
	TimestampTz now = GetCurrentTimestamp();
	uint64		evicted = 0;
	int			i;

	for (i = 0; i < FLEET_SESSION_PARTITIONS; i++)
		LWLockAcquire(fleet_shared->partition_locks[i], LW_EXCLUSIVE);

	hash_seq_init(&status, session_htab);
	while ((entry = (FleetSession *) hash_seq_search(&status)) != NULL)
	{
		if (ring_record_live(entry->last_lsn, applied))
			continue;
		if (!aggressive &&
			!TimestampDifferenceExceeds(entry->last_used, now, FLEET_SESSION_IDLE_MS))
			continue;
		hash_search(session_htab, entry->id, HASH_REMOVE, NULL);
		evicted++;
	}
	/* loaders that raced with this compare it under their partition lock */
	if (evicted > 0)
		pg_atomic_fetch_add_u64(&fleet_shared->eviction_count, 1);

	for (i = FLEET_SESSION_PARTITIONS - 1; i >= 0; i--)
		LWLockRelease(fleet_shared->partition_locks[i]);
	return evicted;
}

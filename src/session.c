/*-------------------------------------------------------------------------
 *
 * session.c
 *	  The partitioned shared session table: lookup, load from the tables on
 *	  a miss, eviction of the least recently used fully applied sessions
 *	  when a partition is crowded, and the eviction marks that guard
 *	  readers of the tables against a racing eviction.
 *
 * Each of the FLEET_SESSION_PARTITIONS partitions is a hash table of its
 * own, with its own capacity and eviction counter, protected by its
 * partition lock.  Eviction therefore locks and scans one partition at a
 * time; no operation but session_clear holds more than one partition lock.
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

/*
 * The partition of a hash code: its top bits.  dynahash picks a bucket by
 * the low bits, so the low bits, taken for the partition, would leave all
 * but one in FLEET_SESSION_PARTITIONS buckets of each partition empty.
 */
#define FLEET_SESSION_PARTITION_SHIFT	(32 - 4)
StaticAssertDecl(FLEET_SESSION_PARTITIONS == (1 << (32 - FLEET_SESSION_PARTITION_SHIFT)),
				 "FLEET_SESSION_PARTITION_SHIFT must match FLEET_SESSION_PARTITIONS");

/* Shared state of a partition besides its hash table */
typedef struct SessionPartition
{
	/* bumped with every removal from it (see session_eviction_mark) */
	pg_atomic_uint64 evictions;
} SessionPartition;

/* The partitions' hash tables, and their shared counters */
static HTAB *session_htabs[FLEET_SESSION_PARTITIONS];
static SessionPartition *session_parts = NULL;

static int	session_partition_of(uint32 hashcode);
static long session_capacity(void);
static void session_removed(int part, uint64 n);
static bool session_deletion_applied(FleetSession *entry);
static void session_fill_entry(FleetSession *entry, const FleetSessionInfo *info);
static void session_wait_for_eviction(void);
static long session_crowded_limit(void);
static uint64 session_evict_partition(int part, uint64 applied,
									  TimestampTz cutoff, long target);
static int	session_timestamp_cmp(const void *a, const void *b);

/*
 * Entries per partition: fleetlm.max_active_sessions spread over the
 * partitions, rounded up.
 */
static long
session_capacity(void)
{
	return (fleetlm_max_active_sessions + FLEET_SESSION_PARTITIONS - 1) /
		FLEET_SESSION_PARTITIONS;
}

Size
session_shmem_size(void)
{
	Size		size = MAXALIGN(mul_size(sizeof(SessionPartition),
										 FLEET_SESSION_PARTITIONS));

	for (int i = 0; i < FLEET_SESSION_PARTITIONS; i++)
		size = add_size(size, hash_estimate_size(session_capacity(),
												 sizeof(FleetSession)));
	return size;
}

/*
 * Create or attach to the session table's partitions (caller holds
 * AddinShmemInitLock).
 */
void
session_shmem_init(void)
{
	bool		found;

	session_parts = (SessionPartition *)
		ShmemInitStruct("fleetlm session partitions",
						mul_size(sizeof(SessionPartition), FLEET_SESSION_PARTITIONS),
						&found);
	for (int i = 0; i < FLEET_SESSION_PARTITIONS; i++)
	{
		HASHCTL		info;
		char		name[64];

		if (!found)
			pg_atomic_init_u64(&session_parts[i].evictions, 0);
		info.keysize = FLEETLM_ID_MAXLEN + 1;
		info.entrysize = sizeof(FleetSession);
		snprintf(name, sizeof(name), "fleetlm sessions %d", i);
		session_htabs[i] = ShmemInitHash(name,
										 session_capacity(),
										 session_capacity(),
										 &info,
										 HASH_ELEM | HASH_STRINGS);
	}
}

/*
 * The partition of a hash code.
 */
static int
session_partition_of(uint32 hashcode)
{
	return (int) (hashcode >> FLEET_SESSION_PARTITION_SHIFT);
}

/*
 * The hash code of session `id`, which selects its partition; ids longer
 * than a key hash as their first FLEETLM_ID_MAXLEN bytes.
 */
uint32
session_hash_code(const char *id)
{
	char		key[FLEETLM_ID_MAXLEN + 1];

	/* hash the key exactly as dynahash will compare it (all use one hash) */
	strlcpy(key, id, sizeof(key));
	return get_hash_value(session_htabs[0], key);
}

LWLock *
session_partition_lock(uint32 hashcode)
{
	return fleet_shared->partition_locks[session_partition_of(hashcode)];
}

/*
 * The entry of session `id`, or NULL; caller holds its partition lock.
 */
FleetSession *
session_find(const char *id, uint32 hashcode)
{
	return (FleetSession *)
		hash_search_with_hash_value(session_htabs[session_partition_of(hashcode)],
									id, hashcode, HASH_FIND, NULL);
}

/*
 * Count a batch of n removals from partition `part` (nothing if n is 0),
 * whose lock the caller holds exclusively: a loader of a session of this
 * partition whose snapshot predates them retries, and so does a reader of
 * several sessions (FleetShared->eviction_count).
 */
static void
session_removed(int part, uint64 n)
{
	if (n == 0)
		return;
	pg_atomic_fetch_add_u64(&session_parts[part].evictions, 1);
	pg_atomic_fetch_add_u64(&fleet_shared->eviction_count, 1);
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
	uint32		hashcode;
	int			part;

	strlcpy(id, entry->id, sizeof(id));
	hashcode = get_hash_value(session_htabs[0], id);
	part = session_partition_of(hashcode);
	session_removed(part, 1);
	hash_search_with_hash_value(session_htabs[part], id, hashcode,
								HASH_REMOVE, NULL);
}

/*
 * Entries in the table (read without the partition locks: a snapshot of
 * moving counts, for statistics).
 */
long
session_count(void)
{
	long		n = 0;

	for (int i = 0; i < FLEET_SESSION_PARTITIONS; i++)
		n += hash_get_num_entries(session_htabs[i]);
	return n;
}

/*
 * A partition with more entries than this is crowded: the applier evicts
 * from it (7/8 of its capacity).
 */
static long
session_crowded_limit(void)
{
	return session_capacity() * 7 / 8;
}

/*
 * Is any partition crowded?  (Read without the partition locks: the
 * applier's hint to evict now.)
 */
bool
session_crowded(void)
{
	long		limit = session_crowded_limit();

	for (int i = 0; i < FLEET_SESSION_PARTITIONS; i++)
		if (hash_get_num_entries(session_htabs[i]) > limit)
			return true;
	return false;
}

/*
 * A mark to take before reading the tables for the session with
 * `hashcode` while it has no entry.  The entry may be evicted while the
 * read runs, with records the read's snapshot does not see yet;
 * session_evicted_since(hashcode, mark) after the read says whether that
 * can have happened (an eviction in the session's partition), and the
 * reader then retries.  The barrier keeps the read of the tables after the
 * read of the mark.
 */
uint64
session_eviction_mark(uint32 hashcode)
{
	SessionPartition *p = &session_parts[session_partition_of(hashcode)];
	uint64		mark = pg_atomic_read_u64(&p->evictions);

	pg_memory_barrier();
	return mark;
}

/*
 * Has an entry of the partition of `hashcode` been removed since
 * session_eviction_mark(hashcode) returned mark?
 */
bool
session_evicted_since(uint32 hashcode, uint64 mark)
{
	SessionPartition *p = &session_parts[session_partition_of(hashcode)];

	return pg_atomic_read_u64(&p->evictions) != mark;
}

/*
 * The same for a reader of any number of sessions: a mark that moves with
 * every removal from any partition.
 */
uint64
session_eviction_mark_all(void)
{
	uint64		mark = pg_atomic_read_u64(&fleet_shared->eviction_count);

	pg_memory_barrier();
	return mark;
}

bool
session_evicted_since_all(uint64 mark)
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
	HTAB	   *htab = session_htabs[session_partition_of(hashcode)];
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
		mark = session_eviction_mark(hashcode);
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
		if (session_evicted_since(hashcode, mark))
		{
			LWLockRelease(lock);
			continue;
		}
		entry = NULL;
		if (hash_get_num_entries(htab) < session_capacity())
			entry = (FleetSession *) hash_search_with_hash_value(htab, id,
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
					 errdetail("All %ld entries of the session table's partition of this session hold sessions with unapplied messages.",
							   session_capacity()),
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
 * table.  Returns false if the session's partition is full even after
 * evicting every entry of it whose records are applied.
 */
bool
session_replay(const char *id, uint64 lsn, int64 seq, bool deleted)
{
	uint32		hashcode = session_hash_code(id);
	int			part = session_partition_of(hashcode);
	LWLock	   *lock = session_partition_lock(hashcode);

	for (int attempt = 0; attempt < 2; attempt++)
	{
		FleetSession *entry;
		bool		found;

		LWLockAcquire(lock, LW_EXCLUSIVE);
		entry = (FleetSession *) hash_search_with_hash_value(session_htabs[part],
															 id, hashcode,
															 HASH_FIND, NULL);
		found = (entry != NULL);
		if (!found &&
			hash_get_num_entries(session_htabs[part]) < session_capacity())
			entry = (FleetSession *) hash_search_with_hash_value(session_htabs[part],
																 id, hashcode,
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
		(void) session_evict_partition(part, fleet_read_pos(&fleet_shared->applied),
									   DT_NOEND, -1);
	}
	return false;
}

/*
 * Remove every entry (a standby's, at promotion or when its view of the
 * log starts over).  Counts as an eviction.  The one operation that holds
 * every partition lock, so that the table is empty at once.
 */
void
session_clear(void)
{
	HASH_SEQ_STATUS status;
	FleetSession *entry;
	int			i;

	for (i = 0; i < FLEET_SESSION_PARTITIONS; i++)
		LWLockAcquire(fleet_shared->partition_locks[i], LW_EXCLUSIVE);
	for (i = 0; i < FLEET_SESSION_PARTITIONS; i++)
	{
		hash_seq_init(&status, session_htabs[i]);
		while ((entry = (FleetSession *) hash_seq_search(&status)) != NULL)
			hash_search(session_htabs[i], entry->id, HASH_REMOVE, NULL);
		session_removed(i, 1);
	}
	for (i = FLEET_SESSION_PARTITIONS - 1; i >= 0; i--)
		LWLockRelease(fleet_shared->partition_locks[i]);
}

/*
 * qsort comparator of TimestampTz values.
 */
static int
session_timestamp_cmp(const void *a, const void *b)
{
	TimestampTz ta = *(const TimestampTz *) a;
	TimestampTz tb = *(const TimestampTz *) b;

	return (ta > tb) - (ta < tb);
}

/*
 * Evict from partition `part` the entries whose records are all applied
 * (below `applied`) and that were last used at or before `cutoff`
 * (DT_NOEND: every applied entry; DT_NOBEGIN: none).  Then, if `target`
 * >= 0 and the partition is crowded, evict the least recently used of its
 * applied entries until it holds `target` entries or none of them is left.
 * Holds the partition's lock alone, across one scan of the partition (two
 * when the second step runs; the sort in between runs without the lock).
 * Returns the number evicted.
 */
static uint64
session_evict_partition(int part, uint64 applied, TimestampTz cutoff,
						long target)
{
	HTAB	   *htab = session_htabs[part];
	LWLock	   *lock = fleet_shared->partition_locks[part];
	HASH_SEQ_STATUS status;
	FleetSession *entry;
	uint64		evicted = 0;
	TimestampTz *used = NULL;
	long		nused = 0;
	long		excess = 0;
	TimestampTz next_cutoff;

	if (target >= 0)
		used = (TimestampTz *) palloc(sizeof(TimestampTz) * session_capacity());

	LWLockAcquire(lock, LW_EXCLUSIVE);
	hash_seq_init(&status, htab);
	while ((entry = (FleetSession *) hash_seq_search(&status)) != NULL)
	{
		if (ring_record_live(entry->last_lsn, applied))
			continue;
		if (entry->last_used > cutoff)
		{
			if (used != NULL && nused < session_capacity())
				used[nused++] = entry->last_used;
			continue;
		}
		hash_search(htab, entry->id, HASH_REMOVE, NULL);
		evicted++;
	}
	/* loaders that raced with this compare it under their partition lock */
	session_removed(part, evicted);
	if (target >= 0 && hash_get_num_entries(htab) > session_crowded_limit())
		excess = hash_get_num_entries(htab) - target;
	LWLockRelease(lock);

	if (excess <= 0 || nused == 0)
	{
		if (used != NULL)
			pfree(used);
		return evicted;
	}

	/* the excess-th oldest use among the applied entries seen */
	if (excess >= nused)
		next_cutoff = DT_NOEND;
	else
	{
		qsort(used, nused, sizeof(TimestampTz), session_timestamp_cmp);
		next_cutoff = used[excess - 1];
	}
	pfree(used);

	/* entries used since have a later last_used and stay */
	return evicted + session_evict_partition(part, applied, next_cutoff, -1);
}

/*
 * Evict, one partition at a time, from each crowded partition (more than
 * 7/8 full) the least recently used entries whose records are all
 * applied, down to 3/4 of the partition; with `all`, every entry of every
 * partition whose records are all applied.  Entries are not evicted for
 * being idle: while its partition has room an entry stays, and the next
 * append to its session needs no read of the tables.  Called by the
 * applier after it published `applied` when session_crowded(), and on a
 * standby with `all` as applied moves.  Returns the number evicted.
 */
uint64
session_evict(uint64 applied, bool all)
{
	long		target = session_capacity() * 3 / 4;
	long		limit = session_crowded_limit();
	uint64		evicted = 0;

	for (int i = 0; i < FLEET_SESSION_PARTITIONS; i++)
	{
		if (all)
			evicted += session_evict_partition(i, applied, DT_NOEND, -1);
		else if (hash_get_num_entries(session_htabs[i]) > limit)
			evicted += session_evict_partition(i, applied, DT_NOBEGIN, target);
	}
	return evicted;
}

/*-------------------------------------------------------------------------
 *
 * shmem.h
 *	  fleetlm's shared control block: state, log positions, latches,
 *	  condition variables and statistics.
 *
 * Positions are byte offsets ("LSNs") in one ever-growing log, with
 *
 *		applied <= durable <= written <= inserted
 *
 * Ring bytes in [applied, inserted) are live; everything below applied may
 * be overwritten by new inserts.
 *
 * Locking rules
 * -------------
 * - insert_lock (exclusive) serializes reservation of log space and the
 *	 copy of the record into the ring; `inserted` and the append counters are
 *	 only written while holding it.  A backend that also needs a session
 *	 partition lock takes the partition lock first (partition -> insert).
 * - `written` and `durable` are written only by the process holding
 *	 write_lock (the WAL writer, or a backend flushing for its own append),
 *	 held across the write and the fdatasync; `applied` only by the applier
 *	 (or by recovery before READY).  All three are atomics read without
 *	 locks.
 * - reclaim_lock: the applier advances `applied` holding it exclusively;
 *	 readers that walk records in the ring hold it shared, so the bytes they
 *	 read cannot be recycled under them.
 * - segment_lock serializes creation, recycling and removal of WAL segment
 *	 files between the writer and the applier.
 * - Statistics counters are atomics; most are written by one process.
 *
 * src/shmem.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_SHMEM_H
#define FLEETLM_SHMEM_H

#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/spin.h"

/* Life cycle of the log, in FleetShared->state */
typedef enum FleetState
{
	FLEET_STATE_STARTING = 0,	/* waiting for the applier to start recovery */
	FLEET_STATE_RECOVERING,		/* applier replaying the WAL */
	FLEET_STATE_READY			/* appends accepted */
} FleetState;

/* Number of partitions of the session table (power of two) */
#define FLEET_SESSION_PARTITIONS	16

/* First position a record can have; 0 means "no record" */
#define FLEET_FIRST_LSN				UINT64CONST(8)

typedef struct FleetShared
{
	pg_atomic_uint32 state;		/* FleetState */
	pg_atomic_uint32 writer_error;	/* errno of a failed segment creation */
	pg_atomic_uint64 failed_segment;	/* ... of this segment (when set) */
	pg_atomic_uint64 segment_wanted;	/* a flush found this segment missing;
										 * the writer creates it (0: none) */
	pg_atomic_uint32 reinstalled;	/* extension dropped and created again */

	uint64		ring_size;		/* bytes in the ring */
	uint64		segment_size;	/* bytes per WAL segment */
	uint64		wal_id;			/* identity of the WAL directory */

	pg_atomic_uint64 inserted;
	pg_atomic_uint64 written;
	pg_atomic_uint64 durable;
	pg_atomic_uint64 applied;

	/* bumped whenever the applier evicts session entries */
	pg_atomic_uint64 eviction_count;

	/*
	 * fleetlm.replication (replica.c): the end, in PostgreSQL's WAL, of the
	 * record that carried the bytes up to `durable`; written before
	 * `durable` by the holder of write_lock.  0: none.
	 */
	pg_atomic_uint64 durable_xlog;
	/* FLEET_REPLICA_* (replica.h); written by the startup process's redo */
	pg_atomic_uint32 replica_state;
	/* this server ran archive recovery (a standby, a restored backup) */
	pg_atomic_uint32 replica_seen;

	LWLock	   *insert_lock;
	LWLock	   *reclaim_lock;
	LWLock	   *segment_lock;
	LWLock	   *write_lock;
	LWLock	   *partition_locks[FLEET_SESSION_PARTITIONS];

	/* latches of the two workers, NULL while they are not running */
	Latch	   *writer_latch;
	Latch	   *applier_latch;
	int			writer_pid;
	int			applier_pid;

	ConditionVariable space_cv; /* `applied` advanced: ring space freed */
	ConditionVariable ready_cv; /* state changed */
	ConditionVariable applied_cv;	/* `applied` advanced (flush waiters) */

	/* long-pollers registered in their FleetWaiter slots (longpoll.c) */
	pg_atomic_uint32 pollers;

	/* statistics */
	pg_atomic_uint64 appends;	/* records inserted (under insert_lock) */
	pg_atomic_uint64 append_bytes;	/* bytes inserted (under insert_lock) */
	pg_atomic_uint64 tombstones;	/* deletions inserted (under insert_lock) */
	pg_atomic_uint64 tombstones_applied;	/* ... and applied (applier) */
	pg_atomic_uint64 space_waits;	/* inserts that waited for ring space */
	pg_atomic_uint64 fsyncs;	/* writer fdatasync rounds */
	pg_atomic_uint64 fsync_usec;	/* total time in write + fdatasync */
	pg_atomic_uint64 applier_batches;
	pg_atomic_uint64 applier_rows;
	pg_atomic_uint64 applier_usec;
	pg_atomic_uint64 applier_errors;
	pg_atomic_uint64 recovery_records;
	pg_atomic_uint64 recovery_usec;

	/* why the last recovery failed, for the "not ready" error; "" if none */
	slock_t		error_lock;
	char		recovery_error[256];
} FleetShared;

/*
 * Per-process wait slots, one per PGPROC of a backend or background worker;
 * only the slot's owner writes it.
 *
 * A backend waiting for durability (walwriter_flush_for) sets wait_lsn (0
 * when idle).  Whoever ends a flush round sets the latch of every waiter it
 * made durable, and of the first one it did not, which then leads the next
 * round: no broadcast, no herd.
 *
 * A backend in wait_for_messages sets poll_hash (the session's hash code)
 * and polling; a flush round wakes only the pollers of the sessions whose
 * records it made durable (longpoll.c).
 */
typedef struct FleetWaiter
{
	pg_atomic_uint64 wait_lsn;
	Latch	   *latch;
	pg_atomic_uint32 polling;
	pg_atomic_uint32 poll_hash;
} FleetWaiter;

/* Buckets of the long-poll filter (power of two), see longpoll.c */
#define FLEET_POLL_BUCKETS		16384

extern FleetShared *fleet_shared;
extern char *fleet_ring;
extern FleetWaiter *fleet_waiters;
extern int	fleet_nwaiters;
extern pg_atomic_uint32 *fleet_poll_buckets;

extern void shmem_request(void);
extern void shmem_install_hooks(void);
extern Size fleetlm_shmem_size(void);

extern void fleetlm_require_shmem(void);
extern void fleetlm_require_database(void);
extern void fleetlm_wait_ready(void);
extern const char *fleetlm_state_name(uint32 state);
extern void fleetlm_set_recovery_error(const char *msg);

/* Positions with the barriers their readers and writers need */
static inline uint64
fleet_read_pos(pg_atomic_uint64 *pos)
{
	uint64		v = pg_atomic_read_u64(pos);

	pg_read_barrier();
	return v;
}

static inline void
fleet_write_pos(pg_atomic_uint64 *pos, uint64 v)
{
	pg_write_barrier();
	pg_atomic_write_u64(pos, v);
}

/* Single-writer counter increment without a locked instruction */
static inline void
fleet_count(pg_atomic_uint64 *counter, uint64 n)
{
	pg_atomic_write_u64(counter, pg_atomic_read_u64(counter) + n);
}

#endif							/* FLEETLM_SHMEM_H */

/*-------------------------------------------------------------------------
 *
 * longpoll.c
 *	  Waking the long-pollers of a session when its records become durable.
 *
 * A backend in wait_for_messages registers the hash code of its session in
 * its wait slot (FleetWaiter.poll_hash, .polling) and counts itself in
 * fleet_poll_buckets[hash % FLEET_POLL_BUCKETS] and FleetShared->pollers,
 * then checks the session and sleeps on its latch.  A flush round, when it
 * publishes `durable`, walks the headers of the records it made durable;
 * for a record whose session's bucket is not empty it scans the slots and
 * wakes the pollers of that session.  So a round wakes nobody else, and a
 * round costs nothing extra while nobody polls.  (Before, every round
 * broadcast a condition variable and every poller re-walked its session.)
 *
 * No wake-up is lost: the poller registers, then (after a barrier) reads
 * `durable` and its session; the round publishes `durable`, then (after a
 * barrier) reads the registrations.  One of the two sees the other.
 *
 * Locking rules
 * -------------
 * longpoll_publish_durable runs under write_lock, and takes reclaim_lock
 * shared around publishing `durable` and the walk: `applied` cannot pass
 * the new records before the walk is done, so their ring bytes stay live
 * (lock order: write_lock -> reclaim_lock).  A slot's poll fields are
 * written only by its owner; the buckets and the count are atomics.
 * Latches are set after write_lock is released (longpoll_wake_collected),
 * or at once if more sessions are found than fit the list.
 *
 * src/longpoll.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"

#include "fleetlm.h"
#include "longpoll.h"
#include "record.h"
#include "ring.h"
#include "session.h"
#include "shmem.h"

/* latches a round sets after releasing write_lock */
#define LONGPOLL_MAX_COLLECTED	64

static int	longpoll_collected[LONGPOLL_MAX_COLLECTED];
static int	longpoll_ncollected = 0;

/* this process is registered (its slot's poll fields are set) */
static bool longpoll_registered = false;
static bool longpoll_exit_hook = false;

static void longpoll_at_exit(int code, Datum arg);
static void longpoll_collect(uint32 hashcode);

/*
 * Register this backend as a long-poller of the session with `hashcode`.
 * Call before checking the session; longpoll_unregister() when done
 * (also on error: the caller's PG_CATCH, and an exit callback for FATAL).
 */
void
longpoll_register(uint32 hashcode)
{
	FleetWaiter *slot = &fleet_waiters[MyProc->pgprocno];

	Assert(!longpoll_registered);
	if (!longpoll_exit_hook)
	{
		before_shmem_exit(longpoll_at_exit, (Datum) 0);
		longpoll_exit_hook = true;
	}
	slot->latch = MyLatch;
	pg_atomic_write_u32(&slot->poll_hash, hashcode);
	pg_atomic_write_u32(&slot->polling, 1);
	pg_atomic_fetch_add_u32(&fleet_poll_buckets[hashcode % FLEET_POLL_BUCKETS], 1);
	pg_atomic_fetch_add_u32(&fleet_shared->pollers, 1);
	longpoll_registered = true;
	pg_memory_barrier();
}

void
longpoll_unregister(void)
{
	FleetWaiter *slot;
	uint32		hashcode;

	if (!longpoll_registered)
		return;
	slot = &fleet_waiters[MyProc->pgprocno];
	hashcode = pg_atomic_read_u32(&slot->poll_hash);
	pg_atomic_write_u32(&slot->polling, 0);
	pg_atomic_fetch_sub_u32(&fleet_poll_buckets[hashcode % FLEET_POLL_BUCKETS], 1);
	pg_atomic_fetch_sub_u32(&fleet_shared->pollers, 1);
	longpoll_registered = false;
}

static void
longpoll_at_exit(int code, Datum arg)
{
	longpoll_unregister();
}

/*
 * Note every poller of the session with `hashcode` for waking.
 */
static void
longpoll_collect(uint32 hashcode)
{
	for (int i = 0; i < fleet_nwaiters; i++)
	{
		FleetWaiter *slot = &fleet_waiters[i];

		if (pg_atomic_read_u32(&slot->polling) == 0 ||
			pg_atomic_read_u32(&slot->poll_hash) != hashcode)
			continue;
		if (longpoll_ncollected < LONGPOLL_MAX_COLLECTED)
			longpoll_collected[longpoll_ncollected++] = i;
		else
			SetLatch(slot->latch);
	}
}

/*
 * Wake the pollers of one session now, before its newest records are
 * durable: the dispatcher does, after appending an answer without waiting.
 * A poller that finds records of its session inserted but not durable
 * leads the flush round itself (api.c), so the answer's durability does
 * not wait for the WAL writer to wake up.  Returns whether there was one;
 * if not, the caller wakes the WAL writer.
 */
bool
longpoll_wake_now(uint32 hashcode)
{
	bool		found = false;

	pg_memory_barrier();
	if (pg_atomic_read_u32(&fleet_poll_buckets[hashcode % FLEET_POLL_BUCKETS]) == 0)
		return false;
	for (int i = 0; i < fleet_nwaiters; i++)
	{
		FleetWaiter *slot = &fleet_waiters[i];

		if (pg_atomic_read_u32(&slot->polling) == 0 ||
			pg_atomic_read_u32(&slot->poll_hash) != hashcode)
			continue;
		SetLatch(slot->latch);
		found = true;
	}
	return found;
}

/*
 * Publish [from, to) as durable and find the pollers of the sessions of
 * those records.  Caller holds write_lock; the records are complete and
 * fsynced.
 */
void
longpoll_publish_durable(uint64 from, uint64 to)
{
	uint32		last_hash = 0;
	bool		have_last = false;
	uint64		pos;

	LWLockAcquire(fleet_shared->reclaim_lock, LW_SHARED);
	fleet_write_pos(&fleet_shared->durable, to);
	pg_memory_barrier();
	if (pg_atomic_read_u32(&fleet_shared->pollers) == 0)
	{
		LWLockRelease(fleet_shared->reclaim_lock);
		return;
	}

	for (pos = from; pos < to;)
	{
		FleetRecordHeader hdr;
		char		id[FLEETLM_ID_MAXLEN + 1];
		int			len;
		uint32		hashcode;

		ring_read_header(pos, &hdr);
		len = Min(hdr.session_len, FLEETLM_ID_MAXLEN);
		ring_read(pos + record_session_offset(&hdr), id, len);
		id[len] = '\0';
		hashcode = session_hash_code(id);
		if (!(have_last && hashcode == last_hash) &&
			pg_atomic_read_u32(&fleet_poll_buckets[hashcode % FLEET_POLL_BUCKETS]) != 0)
			longpoll_collect(hashcode);
		last_hash = hashcode;
		have_last = true;
		pos += FLEET_REC_ALIGN(hdr.total_len);
	}
	LWLockRelease(fleet_shared->reclaim_lock);
}

/*
 * Wake the pollers the last round found; called after write_lock is
 * released.
 */
void
longpoll_wake_collected(void)
{
	for (int i = 0; i < longpoll_ncollected; i++)
		SetLatch(fleet_waiters[longpoll_collected[i]].latch);
	longpoll_ncollected = 0;
}

/*-------------------------------------------------------------------------
 *
 * ring.h
 *	  The shared ring buffer that holds log records from insertion until the
 *	  applier has moved them into tables, and the walk of a session's chain
 *	  of records through it.
 *
 * A record at position lsn lives at ring offset lsn % ring_size and may
 * wrap around the end.  Callers guarantee the bytes they touch are live and
 * stable: writers write only space they reserved under insert_lock; readers
 * read only [applied, inserted) while `applied` cannot move (the applier
 * itself, or a holder of reclaim_lock).
 *
 * Locking rules of the chain walk
 * -------------------------------
 * Every record of a session points to the session's previous one
 * (hdr.prev_lsn); the session entry holds the newest (last_lsn).  A walk
 * from there visits the session's records newest first, for as long as
 * they are in the ring (lsn >= applied).  ring_chain_begin takes
 * reclaim_lock shared, so the applier cannot advance `applied` and recycle
 * the bytes the walk reads, and reads `applied` and `durable` once;
 * ring_chain_end releases the lock.  Walkers hold it briefly: the applier
 * waits for them.  Lock order: partition -> reclaim_lock.
 *
 * src/ring.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_RING_H
#define FLEETLM_RING_H

#include "record.h"

extern void ring_prepare(uint64 lsn, Size len);
extern void ring_write(uint64 lsn, const char *src, Size len);
extern void ring_read(uint64 lsn, char *dst, Size len);
extern char *ring_read_record(uint64 lsn);
extern void ring_read_header(uint64 lsn, FleetRecordHeader *hdr);

/* A walk of one session's records, newest first (see above) */
typedef struct RingChain
{
	uint64		applied;		/* records below this have left the ring */
	uint64		durable;		/* the log is fsynced up to here */
	uint64		next;			/* the record to visit next, 0: none */
} RingChain;

extern void ring_chain_begin(RingChain *chain, uint64 last_lsn);
extern bool ring_chain_next(RingChain *chain, uint64 *lsn, FleetRecordHeader *hdr);
extern void ring_chain_end(RingChain *chain);

/*
 * Does position lsn (0: no record) name a record still in the ring, the
 * applier being at `applied`?
 */
static inline bool
ring_record_live(uint64 lsn, uint64 applied)
{
	return lsn != 0 && lsn >= applied;
}

/*
 * Is the record at lsn, with this header, durable once the log is fsynced
 * up to `durable`?
 */
static inline bool
ring_record_durable(uint64 lsn, const FleetRecordHeader *hdr, uint64 durable)
{
	return lsn + FLEET_REC_ALIGN(hdr->total_len) <= durable;
}

#endif							/* FLEETLM_RING_H */

/*-------------------------------------------------------------------------
 *
 * stream.h
 *	  The chunk store of replies being streamed: bounded shared memory the
 *	  dispatcher writes each parsed chunk into, and fleetlm.wait_for_stream
 *	  reads and long-polls.
 *
 * There are stream_nslots slots (2 x fleetlm.dispatch_max_inflight), each
 * with a buffer of fleetlm.stream_buffer_size kB.  A running HTTP transfer
 * owns one slot; once the transfer ends, the slot keeps its chunks (and
 * learns whether the reply became durable) until the dispatcher takes it
 * for another transfer, oldest first.  When a slot's buffer is full the
 * oldest chunks are dropped: a reader that asks for them gets an error and
 * reads the final message instead.
 *
 * Chunk numbers run on across the attempts of one turn (the dispatcher
 * passes the first number of each attempt), so after_chunk means the same
 * thing whatever attempt a reader saw last; every row says its attempt.
 *
 * Locking: each slot has its own LWLock (tranche "fleetlm_stream"); the
 * dispatcher, the only writer, holds it exclusively to change the slot,
 * readers hold it shared to copy chunks out.  Readers sleep on the slot's
 * condition variable, or on started_cv while no slot holds their turn.
 *
 * src/stream.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_STREAM_H
#define FLEETLM_STREAM_H

#include "utils/jsonb.h"

extern Size stream_shmem_size(void);
extern void stream_shmem_init(void);
extern void stream_request_locks(void);

/*
 * Dispatcher side.  stream_open takes the slot least recently used (never
 * one still open) for (session_id, turn, attempt), empties it and returns
 * its index; first_chunk_no is the number the next chunk of this turn gets.
 * stream_add copies one chunk in and wakes readers.  stream_close marks the
 * transfer over: failed (a retry or agent_error follows) or not.
 * stream_resolved says the turn's reply (or agent_error) is durable: the
 * slot holding the turn, if any, becomes done and readers return.
 *
 * They never raise an error and take one slot lock at a time.  stream_open
 * returns -1 if every slot is open (then the transfer streams nothing);
 * opening an attempt of a turn frees the slot of its earlier attempt.
 * stream_add ignores a chunk numbered below one already added, and a slot
 * no longer open: a slot index is the caller's only until stream_close.
 */
extern int	stream_open(const char *session_id, int64 turn, int attempt,
						int first_chunk_no);
extern void stream_add(int slot, int chunk_no, Jsonb *chunk);
extern void stream_close(int slot, bool failed);
extern void stream_resolved(const char *session_id, int64 turn);

/*
 * stream_close_all closes, as failed, every slot still open: the
 * dispatcher calls it once when it starts, for the slots of a predecessor
 * that exited with an error (shared memory outlives it).
 */
extern void stream_close_all(void);

#endif							/* FLEETLM_STREAM_H */

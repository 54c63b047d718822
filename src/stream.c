/*-------------------------------------------------------------------------
 *
 * stream.c
 *	  The chunk store of replies being streamed: stream_nslots slots in
 *	  shared memory, each with a circular byte buffer of chunks, written by
 *	  the dispatcher and read by fleetlm.wait_for_stream.
 *
 * A slot holds the chunks of one attempt of one turn (session_id, turn).
 * stream_open gives the attempt a slot: a free one if there is one, else
 * the least recently used slot that is not open (its transfer is over).
 * Another slot holding an earlier attempt of the same turn is emptied and
 * freed at that moment, so at most one slot holds a turn.
 *
 * The buffer.  Chunks are records, a StreamChunkHeader (chunk number,
 * attempt, length) followed by the jsonb varlena, at ever-growing byte
 * positions: the oldest record starts at `tail`, the next one will start
 * at `head`, and position p lives at offset p % size of the slot's data
 * area, so a record may wrap around its end; it is then copied in and out
 * in two pieces.  head - tail <= size always.  To make room, stream_add
 * drops records at the tail and sets oldest_kept to the number after the
 * last one dropped; a chunk larger than the whole buffer empties it and is
 * not stored.  Example, size 100, headers of 12 bytes: chunk 1 of 30 bytes
 * takes [0, 42), chunk 2 of 40 bytes [42, 94); chunk 3 of 20 bytes needs
 * 32, and 94 - 0 + 32 > 100, so chunk 1 goes (tail 42, oldest_kept 2);
 * 94 - 42 + 32 = 84 fits, and chunk 3 takes positions [94, 126): offsets
 * 94..99 (6 bytes of its header), then 0..25.
 *
 * Locking rules
 * -------------
 * - Each slot has an LWLock (tranche "fleetlm_stream").  Every field of a
 *	 slot but `key` is written only by the dispatcher, holding the lock
 *	 exclusively; readers hold it shared while they compare the slot's
 *	 turn and copy its state and chunks into local memory.  The dispatcher
 *	 reads its own slots' fields without the lock.  No other lock is taken
 *	 while holding one, and nothing that can raise an error runs under it.
 * - `key` (a hash of session id and turn, 0: the slot holds no turn) is
 *	 an atomic, written under the exclusive lock, read without it to skip
 *	 slots during a scan; a match is confirmed under the lock.
 * - clock and the choice of a slot belong to the dispatcher alone.
 * - Readers sleep on the slot's condition variable (broadcast after every
 *	 change of the slot), or on started_cv while no slot holds their turn
 *	 (broadcast by stream_open and stream_resolved).  They prepare to
 *	 sleep on a condition variable before they check, so no broadcast is
 *	 lost, and sleep 100 ms at most, to look at the log in between.
 *
 * src/stream.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "append.h"
#include "args.h"
#include "fleetlm.h"
#include "idempotency.h"
#include "session.h"
#include "shmem.h"
#include "stream.h"

PG_FUNCTION_INFO_V1(fleetlm_wait_for_stream);

#define STREAM_TRANCHE			"fleetlm_stream"
#define STREAM_MAX_WAIT_MS		(24 * 3600 * 1000L)	/* as wait_for_messages */
#define STREAM_SLEEP_MS			100 /* longest sleep between looks at the log */
#define STREAM_NATTS			5

/* One chunk's record in a slot's buffer; the jsonb varlena follows */
typedef struct StreamChunkHeader
{
	int32		chunk_no;
	int32		attempt;
	uint32		len;			/* bytes of the varlena */
} StreamChunkHeader;

#define STREAM_REC_SIZE(len)	(sizeof(StreamChunkHeader) + (uint64) (len))

typedef struct StreamSlot
{
	LWLock	   *lock;
	ConditionVariable cv;
	pg_atomic_uint64 key;		/* stream_key(session_id, turn), 0: free */
	char		session_id[FLEETLM_ID_MAXLEN + 1];
	int64		turn;
	int			attempt;
	bool		open;			/* the transfer is running */
	bool		done;			/* the turn's reply is durable */
	bool		failed;			/* the transfer ended in a failure */
	int64		first_chunk;	/* number of this attempt's first chunk */
	int64		next_chunk;		/* number after the newest chunk seen */
	int64		oldest_kept;	/* chunks below it were dropped */
	uint64		head;			/* position of the next record */
	uint64		tail;			/* position of the oldest record */
	uint64		gen;			/* clock at stream_open: tells opens apart */
	uint64		used_at;		/* clock at open and close, for the LRU */
} StreamSlot;

typedef struct StreamShared
{
	ConditionVariable started_cv;	/* a slot was opened, a turn resolved */
	uint64		clock;			/* dispatcher's counter for gen, used_at */
	int			nslots;
	Size		size;			/* bytes of each slot's data area */
	Size		data_offset;	/* from the struct to the first data area */
	StreamSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} StreamShared;

/* What a reader copied out of the slot holding its turn */
typedef struct StreamView
{
	int			slot;
	uint64		gen;
	int			attempt;
	bool		open;
	bool		done;
	bool		gone;			/* chunks the reader asked for were dropped */
	int64		next_chunk;
	int64		oldest_kept;
	Size		nbytes;			/* bytes of records copied to the buffer */
} StreamView;

/* What the session table says of a session, to notice that it changed */
typedef struct StreamSessionState
{
	uint64		evictions;
	bool		exists;
	bool		deleted;
	int64		durable_last;
} StreamSessionState;

static StreamShared *stream_shared = NULL;

static Size stream_struct_size(void);
static uint64 stream_key(const char *session_id, int64 turn);
static char *stream_data(int slot);
static void stream_copy_in(int slot, uint64 pos, const void *src, Size len);
static void stream_copy_out(int slot, uint64 pos, void *dst, Size len);
static int	stream_find_own(const char *session_id, int64 turn, uint64 key);
static bool stream_lookup(const char *session_id, int64 turn, uint64 key,
						  int64 from, StreamView *view, char **buf);
static void stream_emit_chunks(ReturnSetInfo *rsinfo, int64 turn,
							   const StreamView *view, const char *buf);
static void stream_emit_done(ReturnSetInfo *rsinfo, int64 turn,
							 const StreamView *view);
static void stream_session_state(const char *session_id, uint32 hashcode,
								 StreamSessionState *st);
static bool stream_turn_answered(const char *session_id, uint32 hashcode,
								 int64 turn);
static int64 stream_timeout_us(Interval *timeout);

/* Slots and data areas; fleetlm.dispatch_max_inflight is PGC_POSTMASTER */
#define STREAM_NSLOTS()			(2 * fleetlm_dispatch_max_inflight)
#define STREAM_DATA_OFFSET(n)	\
	BUFFERALIGN(offsetof(StreamShared, slots) + (n) * sizeof(StreamSlot))

static Size
stream_struct_size(void)
{
	return add_size(STREAM_DATA_OFFSET(STREAM_NSLOTS()),
					mul_size(STREAM_NSLOTS(),
							 (Size) fleetlm_stream_buffer_size_kb * 1024));
}

Size
stream_shmem_size(void)
{
	return add_size(stream_struct_size(), PG_CACHE_LINE_SIZE);	/* ShmemAlloc
																 * aligns */
}

/*
 * Ask for the slots' locks; called from the shmem_request hook.
 */
void
stream_request_locks(void)
{
	RequestNamedLWLockTranche(STREAM_TRANCHE, STREAM_NSLOTS());
}

/*
 * Create or attach to the chunk store (caller holds AddinShmemInitLock).
 */
void
stream_shmem_init(void)
{
	int			n = STREAM_NSLOTS();
	bool		found;

	stream_shared = ShmemInitStruct("fleetlm stream", stream_struct_size(),
									&found);
	if (!found)
	{
		LWLockPadded *locks = GetNamedLWLockTranche(STREAM_TRANCHE);

		memset(stream_shared, 0, STREAM_DATA_OFFSET(n));
		ConditionVariableInit(&stream_shared->started_cv);
		stream_shared->clock = 0;
		stream_shared->nslots = n;
		stream_shared->size = (Size) fleetlm_stream_buffer_size_kb * 1024;
		stream_shared->data_offset = STREAM_DATA_OFFSET(n);
		for (int i = 0; i < n; i++)
		{
			StreamSlot *s = &stream_shared->slots[i];

			s->lock = &locks[i].lock;
			ConditionVariableInit(&s->cv);
			pg_atomic_init_u64(&s->key, 0);
		}
	}
}

/*
 * The key of (session_id, turn) in StreamSlot.key: never 0.
 */
static uint64
stream_key(const char *session_id, int64 turn)
{
	uint64		h;

	h = hash_bytes_extended((const unsigned char *) session_id,
							strnlen(session_id, FLEETLM_ID_MAXLEN), (uint64) turn);
	return h == 0 ? 1 : h;
}

static char *
stream_data(int slot)
{
	return (char *) stream_shared + stream_shared->data_offset +
		(Size) slot * stream_shared->size;
}

/*
 * Copy len bytes to or from position pos of a slot's buffer, in two pieces
 * if they wrap around its end.  Caller holds the slot's lock.
 */
static void
stream_copy_in(int slot, uint64 pos, const void *src, Size len)
{
	char	   *data = stream_data(slot);
	Size		off = pos % stream_shared->size;
	Size		first = Min(len, stream_shared->size - off);

	memcpy(data + off, src, first);
	if (first < len)
		memcpy(data, (const char *) src + first, len - first);
}

static void
stream_copy_out(int slot, uint64 pos, void *dst, Size len)
{
	const char *data = stream_data(slot);
	Size		off = pos % stream_shared->size;
	Size		first = Min(len, stream_shared->size - off);

	memcpy(dst, data + off, first);
	if (first < len)
		memcpy((char *) dst + first, data, len - first);
}

/*
 * Dispatcher: the slot holding (session_id, turn), or -1.  Reads without
 * the locks the fields only the dispatcher writes.
 */
static int
stream_find_own(const char *session_id, int64 turn, uint64 key)
{
	for (int i = 0; i < stream_shared->nslots; i++)
	{
		StreamSlot *s = &stream_shared->slots[i];

		if (pg_atomic_read_u64(&s->key) == key && s->turn == turn &&
			strncmp(s->session_id, session_id, FLEETLM_ID_MAXLEN) == 0)
			return i;
	}
	return -1;
}

/*
 * Dispatcher: take a slot for an attempt of (session_id, turn), or return
 * -1 if every slot is open.  See stream.h.
 */
int
stream_open(const char *session_id, int64 turn, int attempt, int first_chunk_no)
{
	uint64		key;
	int			best = -1;
	bool		best_free = false;
	StreamSlot *s;

	if (stream_shared == NULL)
		return -1;
	key = stream_key(session_id, turn);

	/* an earlier attempt's slot: free it, wake its readers to look again */
	if ((best = stream_find_own(session_id, turn, key)) >= 0)
	{
		s = &stream_shared->slots[best];
		LWLockAcquire(s->lock, LW_EXCLUSIVE);
		pg_atomic_write_u64(&s->key, 0);
		s->open = false;
		s->tail = s->head;
		s->used_at = 0;			/* the first to be taken */
		LWLockRelease(s->lock);
		ConditionVariableBroadcast(&s->cv);
		best = -1;
	}

	/* a free slot, else the least recently used that is not open */
	for (int i = 0; i < stream_shared->nslots; i++)
	{
		bool		is_free;

		s = &stream_shared->slots[i];
		if (s->open)
			continue;
		is_free = (pg_atomic_read_u64(&s->key) == 0);
		if (best < 0 || (is_free && !best_free) ||
			(is_free == best_free && s->used_at < stream_shared->slots[best].used_at))
		{
			best = i;
			best_free = is_free;
		}
	}
	if (best < 0)
		return -1;

	s = &stream_shared->slots[best];
	LWLockAcquire(s->lock, LW_EXCLUSIVE);
	strlcpy(s->session_id, session_id, sizeof(s->session_id));
	s->turn = turn;
	s->attempt = attempt;
	s->open = true;
	s->done = false;
	s->failed = false;
	s->first_chunk = first_chunk_no;
	s->next_chunk = first_chunk_no;
	s->oldest_kept = first_chunk_no;
	s->tail = s->head;
	s->gen = ++stream_shared->clock;
	s->used_at = s->gen;
	pg_atomic_write_u64(&s->key, key);
	LWLockRelease(s->lock);

	/* readers of the turn the slot held before find it gone */
	ConditionVariableBroadcast(&s->cv);
	ConditionVariableBroadcast(&stream_shared->started_cv);
	return best;
}

/*
 * Dispatcher: store chunk number chunk_no in an open slot, dropping the
 * oldest chunks to make room, and wake the slot's readers.  A chunk larger
 * than the whole buffer empties it and is not stored: readers that ask for
 * it get the "no longer buffered" error.  A chunk numbered below one
 * already seen, a slot that is not open, a NULL or external chunk are
 * ignored.  Never raises an error.
 */
void
stream_add(int slot, int chunk_no, Jsonb *chunk)
{
	StreamSlot *s;
	StreamChunkHeader hdr;
	uint64		need;

	if (stream_shared == NULL || slot < 0 || slot >= stream_shared->nslots ||
		chunk == NULL || VARATT_IS_EXTERNAL(chunk))
		return;
	s = &stream_shared->slots[slot];
	hdr.chunk_no = chunk_no;
	hdr.attempt = s->attempt;
	hdr.len = VARSIZE_ANY(chunk);
	need = STREAM_REC_SIZE(hdr.len);

	LWLockAcquire(s->lock, LW_EXCLUSIVE);
	if (!s->open || chunk_no < s->next_chunk)
	{
		LWLockRelease(s->lock);
		return;
	}
	if (need > stream_shared->size)
	{
		s->tail = s->head;
		s->oldest_kept = (int64) chunk_no + 1;
	}
	else
	{
		while (s->head - s->tail + need > stream_shared->size)
		{
			StreamChunkHeader old;

			stream_copy_out(slot, s->tail, &old, sizeof(old));
			s->tail += STREAM_REC_SIZE(old.len);
			s->oldest_kept = (int64) old.chunk_no + 1;
		}
		stream_copy_in(slot, s->head, &hdr, sizeof(hdr));
		stream_copy_in(slot, s->head + sizeof(hdr), chunk, hdr.len);
		s->head += need;
	}
	s->next_chunk = (int64) chunk_no + 1;
	LWLockRelease(s->lock);
	ConditionVariableBroadcast(&s->cv);
}

/*
 * Dispatcher: the transfer of a slot ended.  Its chunks stay readable until
 * the slot is taken again.
 */
void
stream_close(int slot, bool failed)
{
	StreamSlot *s;

	if (stream_shared == NULL || slot < 0 || slot >= stream_shared->nslots)
		return;
	s = &stream_shared->slots[slot];
	LWLockAcquire(s->lock, LW_EXCLUSIVE);
	if (s->open)
	{
		s->open = false;
		s->failed = failed;
		s->used_at = ++stream_shared->clock;
	}
	LWLockRelease(s->lock);
	ConditionVariableBroadcast(&s->cv);
}

/*
 * Dispatcher, at its start: close, as failed, every slot a predecessor
 * that exited with an error left open.
 */
void
stream_close_all(void)
{
	if (stream_shared == NULL)
		return;
	for (int i = 0; i < stream_shared->nslots; i++)
	{
		if (stream_shared->slots[i].open)
			stream_close(i, true);
	}
}

/*
 * Dispatcher: the reply (or agent_error) of (session_id, turn) is durable.
 * The slot holding the turn, if any, becomes done; readers waiting for the
 * turn without a slot look at the log.
 */
void
stream_resolved(const char *session_id, int64 turn)
{
	int			slot;

	if (stream_shared == NULL)
		return;
	slot = stream_find_own(session_id, turn, stream_key(session_id, turn));
	if (slot >= 0)
	{
		StreamSlot *s = &stream_shared->slots[slot];

		LWLockAcquire(s->lock, LW_EXCLUSIVE);
		s->done = true;
		LWLockRelease(s->lock);
		ConditionVariableBroadcast(&s->cv);
	}
	ConditionVariableBroadcast(&stream_shared->started_cv);
}

/*
 * Reader: find the slot holding (session_id, turn) and copy out its state
 * and its records of chunks numbered `from` or later (from the first of
 * the slot's attempt, if `from` is older: see fleetlm_wait_for_stream).
 * *buf, allocated here before any lock is taken, gets the records; if the
 * first chunk wanted was dropped, view->gone is set and nothing copied.
 * Returns false if no slot holds the turn.
 */
static bool
stream_lookup(const char *session_id, int64 turn, uint64 key, int64 from,
			  StreamView *view, char **buf)
{
	for (int i = 0; i < stream_shared->nslots; i++)
	{
		StreamSlot *s = &stream_shared->slots[i];
		uint64		pos;

		if (pg_atomic_read_u64(&s->key) != key)
			continue;
		if (*buf == NULL)
			*buf = palloc(stream_shared->size);

		LWLockAcquire(s->lock, LW_SHARED);
		if (pg_atomic_read_u64(&s->key) != key || s->turn != turn ||
			strcmp(s->session_id, session_id) != 0)
		{
			LWLockRelease(s->lock);
			continue;
		}
		view->slot = i;
		view->gen = s->gen;
		view->attempt = s->attempt;
		view->open = s->open;
		view->done = s->done;
		view->next_chunk = s->next_chunk;
		view->oldest_kept = s->oldest_kept;
		view->nbytes = 0;
		from = Max(from, s->first_chunk);
		view->gone = (from < s->oldest_kept);
		if (!view->gone)
		{
			/* skip the records the reader has */
			for (pos = s->tail; pos < s->head;)
			{
				StreamChunkHeader hdr;

				stream_copy_out(i, pos, &hdr, sizeof(hdr));
				if (hdr.chunk_no >= from)
					break;
				pos += STREAM_REC_SIZE(hdr.len);
			}
			view->nbytes = s->head - pos;
			stream_copy_out(i, pos, *buf, view->nbytes);
		}
		LWLockRelease(s->lock);
		return true;
	}
	return false;
}

/*
 * Put the chunks a lookup copied out into the result, the last with
 * done = true if the slot is done.
 */
static void
stream_emit_chunks(ReturnSetInfo *rsinfo, int64 turn, const StreamView *view,
				   const char *buf)
{
	Size		off = 0;

	if (view->nbytes == 0)
	{
		stream_emit_done(rsinfo, turn, view);
		return;
	}
	while (off < view->nbytes)
	{
		StreamChunkHeader hdr;
		Datum		values[STREAM_NATTS];
		bool		nulls[STREAM_NATTS] = {false};
		char	   *chunk;

		memcpy(&hdr, buf + off, sizeof(hdr));
		chunk = palloc(hdr.len);	/* aligned, unlike the copy in buf */
		memcpy(chunk, buf + off + sizeof(hdr), hdr.len);
		off += STREAM_REC_SIZE(hdr.len);

		values[0] = Int64GetDatum(turn);
		values[1] = Int32GetDatum(hdr.attempt);
		values[2] = Int32GetDatum(hdr.chunk_no);
		values[3] = PointerGetDatum(chunk);
		values[4] = BoolGetDatum(view->done && off >= view->nbytes);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		pfree(chunk);
	}
}

/*
 * The one row of a finished turn with no chunk left to return: the slot's
 * attempt and last chunk number, or NULLs if no slot holds the turn.
 */
static void
stream_emit_done(ReturnSetInfo *rsinfo, int64 turn, const StreamView *view)
{
	Datum		values[STREAM_NATTS] = {0};
	bool		nulls[STREAM_NATTS] = {false, true, true, true, false};

	values[0] = Int64GetDatum(turn);
	if (view != NULL)
	{
		values[1] = Int32GetDatum(view->attempt);
		values[2] = Int32GetDatum((int32) (view->next_chunk - 1));
		nulls[1] = nulls[2] = false;
	}
	values[4] = BoolGetDatum(true);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * Note what the session table says of the session: anything that becomes
 * durable in the session later changes it (durable_last), or removes or
 * creates its entry (evictions, exists).
 */
static void
stream_session_state(const char *session_id, uint32 hashcode,
					 StreamSessionState *st)
{
	LWLock	   *plock = session_partition_lock(hashcode);
	FleetSession *entry;

	memset(st, 0, sizeof(*st));
	st->evictions = session_eviction_mark(hashcode);
	LWLockAcquire(plock, LW_SHARED);
	entry = session_find_live(session_id, hashcode);
	if (entry != NULL)
	{
		st->exists = true;
		st->deleted = entry->deleted;
		if (!entry->deleted)
			st->durable_last = session_durable_last_seq(entry,
														fleet_read_pos(&fleet_shared->durable),
														fleet_read_pos(&fleet_shared->applied));
	}
	LWLockRelease(plock);
}

/*
 * Is the turn answered: does the session have a durable message with the
 * idempotency key 'turn:<turn>', in the table or in the ring?  Unknown and
 * deleted sessions are errors.  The table is read first, on a fresh
 * snapshot, then the ring; if the applier moved in between
 * (idempotency_find_in_ring returns -1), or evicted the session's entry,
 * the record may have been in neither view, and we look again.  The ring
 * walk runs on a copy of the entry, without the partition lock (as in
 * read.c: ring_chain_begin's reclaim_lock keeps the records in place); a
 * record inserted after the copy is for the next look.
 */
static bool
stream_turn_answered(const char *session_id, uint32 hashcode, int64 turn)
{
	LWLock	   *plock = session_partition_lock(hashcode);
	char		key[32];

	snprintf(key, sizeof(key), "turn:" INT64_FORMAT, turn);
	for (;;)
	{
		FleetSession *entry;
		FleetSession copy;
		FleetSessionInfo info;
		uint64		mark;
		uint64		applied;
		int64		seq;
		uint64		end;
		int			found;

		CHECK_FOR_INTERRUPTS();
		mark = session_eviction_mark(hashcode);
		if (idempotency_find_in_table(session_id, key, &applied) > 0)
			return true;

		LWLockAcquire(plock, LW_SHARED);
		entry = session_find_live(session_id, hashcode);
		if (entry != NULL)
			copy = *entry;
		LWLockRelease(plock);

		if (entry == NULL)
		{
			/* no records in the ring: the table was complete, unless ... */
			if (session_evicted_since(hashcode, mark))
				continue;
			if (!session_load_info(session_id, &info, false))
				session_error_missing(session_id, false);
			return false;
		}
		if (copy.deleted)
			session_error_missing(session_id, true);

		found = idempotency_find_in_ring(&copy, key, applied, &seq, &end);
		if (found < 0)
			continue;
		return found > 0 && end <= fleet_read_pos(&fleet_shared->durable);
	}
}

/*
 * The timeout in microseconds, checked as wait_for_messages checks it.
 */
static int64
stream_timeout_us(Interval *timeout)
{
	int64		us;

	/* months and days as 30 and 24 hours, as interval comparison does */
	if (timeout->month < 0 || timeout->day < 0 || timeout->time < 0)
		us = -1;
	else if (timeout->month > 1 || timeout->day > 31 ||
			 timeout->time > STREAM_MAX_WAIT_MS * 1000)
		us = PG_INT64_MAX;
	else
		us = timeout->time +
			((int64) timeout->month * DAYS_PER_MONTH + timeout->day) * USECS_PER_DAY;
	if (us < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must not be negative: %s",
						DatumGetCString(DirectFunctionCall1(interval_out, PointerGetDatum(timeout))))));
	if (us > STREAM_MAX_WAIT_MS * 1000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must be at most 1 day: %s",
						DatumGetCString(DirectFunctionCall1(interval_out, PointerGetDatum(timeout))))));
	return us;
}

/*
 * fleetlm.wait_for_stream(session_id, turn, after_chunk, timeout)
 *		-> TABLE(turn, attempt, chunk_no, chunk, done)
 *
 * Long-poll for the chunks of the reply to a turn (the reply is the
 * message with idempotency key 'turn:<turn>').  Returns as soon as one of
 * these holds, else no rows once the timeout has passed:
 *
 *	- A slot holds the turn and has chunks numbered above after_chunk: all
 *	  of them, in order, each with its attempt; done is false but on the
 *	  last row once the reply is durable.
 *	- The slot is done and has no such chunk: one row (turn, the slot's
 *	  attempt, its last chunk number, NULL, true).
 *	- No slot holds the turn, or its transfer is over or its session's log
 *	  changed, and the reply is durable: one row (turn, NULL, NULL, NULL,
 *	  true) without a slot, as above with one.  An unknown or deleted
 *	  session is then an error (P0002), as in the other reads.
 *
 * Chunk numbers run on across attempts.  A reader whose after_chunk is
 * older than the first chunk of the attempt the slot holds gets that
 * attempt's chunks from its first: the rows name the new attempt, so the
 * client can tell that a retry began and drop its partial reply.  If the
 * chunks it should get next were dropped (the buffer filled up), the call
 * fails with 55000 "no longer buffered": the client reads the final
 * message instead.  Cancellable.
 */
Datum
fleetlm_wait_for_stream(PG_FUNCTION_ARGS)
{
	char	   *session_id = args_text(fcinfo, 0, "session_id");
	int64		turn = args_int64(fcinfo, 1, "turn");
	int32		after_chunk = args_int32(fcinfo, 2, "after_chunk");
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		timeout_us;
	TimestampTz deadline;
	uint64		key;
	uint32		hashcode;
	char	   *buf = NULL;
	ConditionVariable *prepared = NULL;
	uint64		checked = PG_UINT64_MAX;
	StreamSessionState last_state;
	bool		have_state = false;
	TimestampTz next_check = 0;

	args_not_null(fcinfo, 3, "timeout");
	args_check_id(session_id, "session_id");
	if (turn < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("turn must be positive: " INT64_FORMAT, turn)));
	if (after_chunk < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("after_chunk must not be negative: %d", after_chunk)));
	timeout_us = stream_timeout_us(PG_GETARG_INTERVAL_P(3));

	fleetlm_require_shmem();
	fleetlm_require_database();
	fleetlm_wait_ready();
	append_read_own_writes();
	InitMaterializedSRF(fcinfo, 0);
	deadline = GetCurrentTimestamp() + timeout_us;
	key = stream_key(session_id, turn);
	hashcode = session_hash_code(session_id);

	for (;;)
	{
		StreamView view;
		bool		found;
		ConditionVariable *cv;
		uint64		situation;
		bool		check;
		StreamSessionState st;
		TimestampTz now;
		long		left;

		CHECK_FOR_INTERRUPTS();
		found = stream_lookup(session_id, turn, key, (int64) after_chunk + 1,
							  &view, &buf);
		if (found)
		{
			if (view.gone)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("chunks after %d of turn %lld of session \"%s\" are no longer buffered",
								after_chunk, (long long) turn, session_id),
						 errdetail("Chunks before %lld have been dropped; fleetlm.stream_buffer_size is %d kB.",
								   (long long) view.oldest_kept, fleetlm_stream_buffer_size_kb),
						 errhint("Read the turn's final message with fleetlm.messages() or wait_for_messages().")));
			if (view.nbytes > 0 || view.done)
			{
				stream_emit_chunks(rsinfo, turn, &view, buf);
				break;
			}
			cv = &stream_shared->slots[view.slot].cv;

			/* a running transfer has not been answered: no need to look */
			situation = view.gen * 2 + (view.open ? 1 : 0);
			check = !view.open && situation != checked;
		}
		else
		{
			cv = &stream_shared->started_cv;
			situation = 0;
			check = (situation != checked);
		}

		/* from here on a broadcast wakes us: look again before sleeping */
		if (cv != prepared)
		{
			ConditionVariablePrepareToSleep(cv);
			prepared = cv;
			continue;
		}

		/*
		 * Look at the log once for each new situation, and again when the
		 * session's durable messages changed, at most every STREAM_SLEEP_MS
		 * for those.  The state compared is taken before the look, so
		 * nothing that becomes durable after it is missed.
		 */
		now = GetCurrentTimestamp();
		stream_session_state(session_id, hashcode, &st);
		if (!have_state)
			memcpy(&last_state, &st, sizeof(st));
		else if (memcmp(&st, &last_state, sizeof(st)) != 0 && now >= next_check)
			check = true;		/* memset and memcpy: padding compares */
		have_state = true;
		if (check)
		{
			memcpy(&last_state, &st, sizeof(st));
			checked = situation;
			next_check = TimestampTzPlusMilliseconds(now, STREAM_SLEEP_MS);
			if (stream_turn_answered(session_id, hashcode, turn))
			{
				stream_emit_done(rsinfo, turn, found ? &view : NULL);
				break;
			}
			continue;			/* the slots may have changed meanwhile */
		}

		left = TimestampDifferenceMilliseconds(now, deadline);
		if (left <= 0)
			break;
		(void) ConditionVariableTimedSleep(cv, Min(left, STREAM_SLEEP_MS),
										   FLEETLM_WAIT_EVENT);
	}
	ConditionVariableCancelSleep();
	if (buf != NULL)
		pfree(buf);
	return (Datum) 0;
}

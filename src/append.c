/*-------------------------------------------------------------------------
 *
 * append.c
 *	  The write path of the log, and the SQL functions that write through
 *	  it: fleetlm.append, fleetlm.append_batch and fleetlm.delete_session.
 *
 * A write, once its arguments are checked (args.c, batch.c):
 *	1. takes the session's partition lock (session_acquire loads the
 *	   session from the tables on a miss: one SPI query, then never again
 *	   while it is cached).  With an idempotency key it first looks for an
 *	   earlier message with that key, in the table before the lock and in
 *	   the ring under it (idempotency.c); if there is one, the write
 *	   returns its seq and writes nothing;
 *	2. takes insert_lock; if the ring lacks space, releases both and waits
 *	   for the applier to free some (applywait_space); otherwise assigns
 *	   seqs from last_seq + 1, reserves the next bytes of the log and copies
 *	   the records into the ring;
 *	3. releases the locks and waits until the log is durable past its
 *	   records (walwriter_flush_for): the backend leads a flush round itself
 *	   when nobody else is flushing, so one write and fdatasync serve every
 *	   record inserted so far; otherwise it sleeps in its wait slot until
 *	   the round that covers it sets its latch.
 * No SPI once the session is cached but the key lookup of a keyed append,
 * no system call but the flush.
 *
 * Pipelined appends do not wait in step 3: they owe the wait, which is
 * settled once for the whole pipeline before any of its results can reach
 * the client or a commit (pipeline.c).  With fleetlm.synchronous_append
 * off, appends wake the WAL writer and do not wait; deletions always wait.
 *
 * Appends are not transactional: once append() returns, the message is
 * durable even if the caller's transaction aborts (like nextval()).
 *
 * src/append.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "append.h"
#include "applier.h"
#include "applywait.h"
#include "args.h"
#include "batch.h"
#include "fleetlm.h"
#include "idempotency.h"
#include "longpoll.h"
#include "pipeline.h"
#include "record.h"
#include "replica.h"
#include "ring.h"
#include "session.h"
#include "shmem.h"
#include "walwriter.h"

PG_FUNCTION_INFO_V1(fleetlm_append);
PG_FUNCTION_INFO_V1(fleetlm_append_batch);
PG_FUNCTION_INFO_V1(fleetlm_delete_session);

/*
 * One write into the log: the record of one append, the records of one
 * append_batch (an atomic group), or one deletion.
 */
typedef struct AppendWrite
{
	const char *session_id;
	const char *sender_id;		/* NULL for a deletion */
	int			nrec;
	FleetRecordInput *inputs;	/* nrec of them */
	const char *key;			/* idempotency key of a single append */
	int64		key_after;		/* > 0: the key can only be on a message
								 * after this seq (ring first, see
								 * idempotency.c) */
	bool		is_delete;
	/* results */
	int64		first_seq;
	uint64		end;			/* log position after the last record */
	bool		duplicate;		/* the key was found: nothing written */
} AppendWrite;

static void append_check_writer(void);
static void append_write(AppendWrite *w);
static void append_finish(AppendWrite *w);

/*
 * New appends fail while the writer cannot create segments (disk full):
 * they could not become durable.
 */
static void
append_check_writer(void)
{
	uint32		err = pg_atomic_read_u32(&fleet_shared->writer_error);

	if (unlikely(err != 0))
	{
		errno = (int) err;
		ereport(ERROR,
				(errcode(err == ENOSPC ? ERRCODE_DISK_FULL : ERRCODE_IO_ERROR),
				 errmsg("fleetlm WAL writer cannot create segments in \"%s\": %m",
						fleetlm_wal_directory),
				 errdetail("No message was appended."),
				 errhint("Free space in the fleetlm WAL directory; appends resume by themselves.")));
	}
}

/*
 * Insert one write into the ring: assign seqs (under the partition lock),
 * reserve log space and copy the records (under insert_lock).  A group of
 * records gets FLEET_RECF_MORE on all but its last, so recovery keeps all
 * of it or none.  With an idempotency key, an earlier message with the same
 * key (in the table or the ring) is returned instead and nothing written.
 */
static void
append_write(AppendWrite *w)
{
	uint32		hashcode = session_hash_code(w->session_id);
	LWLock	   *plock = session_partition_lock(hashcode);
	char	  **recs = palloc0(w->nrec * sizeof(char *));
	Size	   *alens = palloc0(w->nrec * sizeof(Size));
	pg_crc32c  *crcs = palloc0(w->nrec * sizeof(pg_crc32c));
	Size		total = 0;
	bool		built = false;
	const char *built_recipient = NULL;
	bool		need_table = (w->key_after <= 0);

	w->duplicate = false;
	for (;;)
	{
		FleetSession *entry;
		const char *recipient = NULL;
		uint64		applied0 = 0;
		int64		table_seq = 0;
		uint64		lsn;
		uint64		prev;
		int64		seq;

		if (w->key && need_table)
			table_seq = idempotency_find_in_table(w->session_id, w->key,
												  &applied0);

		entry = session_acquire(w->session_id, hashcode);

		if (w->key)
		{
			int64		dup_seq;
			uint64		dup_end;
			int			found;

			if (!need_table)
			{
				bool		complete;

				if (idempotency_find_in_ring_after(entry, w->key, w->key_after,
												   &dup_seq, &dup_end,
												   &complete))
				{
					LWLockRelease(plock);
					w->duplicate = true;
					w->first_seq = dup_seq;
					w->end = dup_end;
					return;
				}
				if (!complete)
				{
					/* records after key_after were applied: ask the table */
					LWLockRelease(plock);
					need_table = true;
					continue;
				}
			}
			else if (table_seq > 0)
			{
				LWLockRelease(plock);
				w->duplicate = true;
				w->first_seq = table_seq;
				w->end = 0;
				return;
			}
			found = need_table ?
				idempotency_find_in_ring(entry, w->key, applied0,
										 &dup_seq, &dup_end) : 0;
			if (found != 0)
			{
				LWLockRelease(plock);
				if (found < 0)
					continue;
				w->duplicate = true;
				w->first_seq = dup_seq;
				w->end = dup_end;
				return;
			}
		}

		/* the other party of the session, if the sender is one of them */
		if (w->sender_id != NULL)
		{
			if (strcmp(w->sender_id, entry->user_id) == 0)
				recipient = entry->agent_id;
			else if (strcmp(w->sender_id, entry->agent_id) == 0)
				recipient = entry->user_id;
		}
		if (!built ||
			(recipient == NULL) != (built_recipient == NULL) ||
			(recipient != NULL && strcmp(recipient, built_recipient) != 0))
		{
			built_recipient = recipient ? pstrdup(recipient) : NULL;
			total = 0;
			for (int i = 0; i < w->nrec; i++)
			{
				Size		len;

				if (recs[i])
					pfree(recs[i]);
				w->inputs[i].recipient_id = built_recipient;
				recs[i] = record_build(&w->inputs[i], &len, &crcs[i]);
				alens[i] = FLEET_REC_ALIGN(len);
				total += alens[i];
			}
			built = true;
		}

		/* map the ring's head in now, not while holding insert_lock */
		ring_prepare(pg_atomic_read_u64(&fleet_shared->inserted),
					 Min(total + 65536, fleet_shared->ring_size));
		LWLockAcquire(fleet_shared->insert_lock, LW_EXCLUSIVE);
		lsn = pg_atomic_read_u64(&fleet_shared->inserted);
		if (lsn + total - fleet_read_pos(&fleet_shared->applied) > fleet_shared->ring_size)
		{
			LWLockRelease(fleet_shared->insert_lock);
			LWLockRelease(plock);
			applywait_space(total);
			continue;
		}

		prev = entry->last_lsn;
		seq = entry->last_seq;
		w->first_seq = seq + 1;
		for (int i = 0; i < w->nrec; i++)
		{
			FleetRecordHeader *hdr = (FleetRecordHeader *) recs[i];

			hdr->lsn = lsn;
			hdr->prev_lsn = prev;
			hdr->seq = w->is_delete ? seq : ++seq;
			hdr->flags = (i < w->nrec - 1) ? FLEET_RECF_MORE : 0;
			record_finish(hdr, crcs[i]);
			ring_write(lsn, recs[i], alens[i]);
			prev = lsn;
			lsn += alens[i];
		}
		fleet_write_pos(&fleet_shared->inserted, lsn);
		if (w->is_delete)
			fleet_count(&fleet_shared->tombstones, 1);
		else
			fleet_count(&fleet_shared->appends, w->nrec);
		fleet_count(&fleet_shared->append_bytes, total);
		LWLockRelease(fleet_shared->insert_lock);

		entry->last_seq = seq;
		entry->last_lsn = prev;
		entry->last_used = w->inputs[0].created_at;
		if (w->is_delete)
			entry->deleted = true;
		LWLockRelease(plock);

		w->end = lsn;
		for (int i = 0; i < w->nrec; i++)
			pfree(recs[i]);
		return;
	}
}

/*
 * After a write: wake the writer (and the applier if the backlog is
 * large), then wait for durability unless synchronous_append is off.  A
 * duplicate found by its key waits too if its record is not durable yet.
 */
static void
append_finish(AppendWrite *w)
{
	if (w->end == 0)
		return;
	if (!w->duplicate &&
		w->end - fleet_read_pos(&fleet_shared->applied) > fleet_shared->ring_size / 4)
		applier_wake();

	if (fleetlm_synchronous_append || w->is_delete)
	{
		/*
		 * More of the client's pipeline is waiting: wait once, later.  The
		 * writer starts on the records meanwhile.
		 */
		if (!w->is_delete && pipeline_can_defer())
		{
			pipeline_defer(w->end);
			walwriter_wake();
			return;
		}
		/* we flush ourselves if nobody else is: no writer round trip */
		pipeline_wait_durable(w->end, w->session_id, w->first_seq + w->nrec - 1);
	}
	else if (!w->duplicate)
		walwriter_wake();
}

/*
 * Append an atomic group of records for the dispatcher (dispatch.c), with
 * one idempotency key for the group (on its first record), and do not wait
 * for durability: the dispatcher learns that from the log itself, and a
 * reply lost in a crash leaves its turn pending, to run again.  key_after
 * > 0 says the key can only be on a message after that seq, which lets
 * the lookup skip the table when the ring holds every message after it.
 * Returns the first seq; *duplicate says the key was found and nothing
 * written.  If the session has long-pollers, they are woken to flush the
 * records themselves and *unflushed is the position to be durable: the
 * caller wakes the WAL writer if it is not durable soon.
 * Must run in a transaction (the session and key lookups may use SPI).
 */
int64
append_group_async(const char *session_id, const char *sender_id,
				   FleetRecordInput *inputs, int n, const char *key,
				   int64 key_after, bool *duplicate, uint64 *unflushed)
{
	AppendWrite w;
	TimestampTz now = GetCurrentTimestamp();

	fleetlm_wait_ready();
	append_check_writer();
	for (int i = 0; i < n; i++)
	{
		inputs[i].session_id = session_id;
		inputs[i].sender_id = sender_id;
		inputs[i].created_at = now;
		inputs[i].key = (i == 0) ? key : NULL;
	}
	memset(&w, 0, sizeof(w));
	w.session_id = session_id;
	w.sender_id = sender_id;
	w.nrec = n;
	w.inputs = inputs;
	w.key = key;
	w.key_after = key_after;
	append_write(&w);
	*unflushed = 0;
	if (w.end != 0 && !w.duplicate)
	{
		if (w.end - fleet_read_pos(&fleet_shared->applied) > fleet_shared->ring_size / 4)
			applier_wake();
		/* a long-poller of the session flushes it; else the WAL writer */
		if (longpoll_wake_now(session_hash_code(session_id)))
			*unflushed = w.end;
		else
			walwriter_wake();
	}
	*duplicate = w.duplicate;
	return w.first_seq;
}

/*
 * Reads see this backend's own appends: wait for those a pipeline left
 * undurable so far (see pipeline.c).
 */
void
append_read_own_writes(void)
{
	pipeline_settle();
}

/*
 * fleetlm.append(session_id, sender_id, kind, content, metadata,
 *				  idempotency_key) -> bigint
 */
Datum
fleetlm_append(PG_FUNCTION_ARGS)
{
	char	   *session_id = args_text(fcinfo, 0, "session_id");
	char	   *sender_id = args_text(fcinfo, 1, "sender_id");
	char	   *kind = args_text(fcinfo, 2, "kind");
	Jsonb	   *content = args_jsonb(fcinfo, 3, "content");
	Jsonb	   *metadata = args_jsonb(fcinfo, 4, "metadata");
	char	   *key;
	FleetRecordInput in;
	AppendWrite w;

	args_check_id(session_id, "session_id");
	args_check_id(sender_id, "sender_id");
	args_check_message(kind, content, metadata);
	key = args_text_or_null(fcinfo, 5);
	if (key != NULL)
		idempotency_check_key(key);

	fleetlm_require_primary("append");
	fleetlm_wait_ready();
	append_check_writer();

	memset(&in, 0, sizeof(in));
	in.type = FLEET_REC_APPEND;
	in.session_id = session_id;
	in.sender_id = sender_id;
	in.kind = kind;
	in.key = key;
	in.content = content;
	in.metadata = metadata;
	in.created_at = GetCurrentTimestamp();

	memset(&w, 0, sizeof(w));
	w.session_id = session_id;
	w.sender_id = sender_id;
	w.nrec = 1;
	w.inputs = &in;
	w.key = key;
	append_write(&w);
	append_finish(&w);
	PG_RETURN_INT64(w.first_seq);
}

/*
 * fleetlm.append_batch(session_id, sender_id, messages) -> SETOF bigint
 *
 * One durable write, consecutive seqs, all or nothing.
 */
Datum
fleetlm_append_batch(PG_FUNCTION_ARGS)
{
	FuncCallContext *funcctx;
	int64	   *seqs;

	if (SRF_IS_FIRSTCALL())
	{
		char	   *session_id = args_text(fcinfo, 0, "session_id");
		char	   *sender_id = args_text(fcinfo, 1, "sender_id");
		Jsonb	   *batch = args_jsonb(fcinfo, 2, "messages");
		FleetRecordInput *inputs;
		TimestampTz now;
		AppendWrite w;
		int			n;
		MemoryContext oldcxt;

		args_check_id(session_id, "session_id");
		args_check_id(sender_id, "sender_id");
		n = batch_parse(batch, &inputs);

		fleetlm_require_primary("append_batch");
		fleetlm_wait_ready();
		append_check_writer();

		now = GetCurrentTimestamp();
		for (int i = 0; i < n; i++)
		{
			inputs[i].session_id = session_id;
			inputs[i].sender_id = sender_id;
			inputs[i].created_at = now;
		}
		memset(&w, 0, sizeof(w));
		w.session_id = session_id;
		w.sender_id = sender_id;
		w.nrec = n;
		w.inputs = inputs;
		append_write(&w);
		append_finish(&w);

		funcctx = SRF_FIRSTCALL_INIT();
		oldcxt = MemoryContextSwitchTo(funcctx->multi_call_memory_ctx);
		seqs = palloc(sizeof(int64));
		*seqs = w.first_seq;
		funcctx->user_fctx = seqs;
		funcctx->max_calls = n;
		MemoryContextSwitchTo(oldcxt);
	}

	funcctx = SRF_PERCALL_SETUP();
	seqs = (int64 *) funcctx->user_fctx;
	if (funcctx->call_cntr < funcctx->max_calls)
	{
		/* SRF_RETURN_NEXT advances call_cntr before using its argument */
		Datum		seq = Int64GetDatum(*seqs + (int64) funcctx->call_cntr);

		SRF_RETURN_NEXT(funcctx, seq);
	}
	SRF_RETURN_DONE(funcctx);
}

/*
 * fleetlm.delete_session(session_id) -> boolean
 *
 * Writes a tombstone through the WAL and returns once it is durable.  From
 * then on the session takes no appends and cannot be read; the applier
 * removes its row, messages and cursors, and messages not applied before
 * the tombstone never reach the table, even across a crash.
 */
Datum
fleetlm_delete_session(PG_FUNCTION_ARGS)
{
	char	   *session_id = args_text(fcinfo, 0, "session_id");
	FleetRecordInput in;
	AppendWrite w;

	args_check_id(session_id, "session_id");
	fleetlm_require_primary("delete_session");
	fleetlm_wait_ready();
	append_check_writer();

	memset(&in, 0, sizeof(in));
	in.type = FLEET_REC_DELETE_SESSION;
	in.session_id = session_id;
	in.created_at = GetCurrentTimestamp();

	memset(&w, 0, sizeof(w));
	w.session_id = session_id;
	w.nrec = 1;
	w.inputs = &in;
	w.is_delete = true;
	append_write(&w);
	append_finish(&w);
	PG_RETURN_BOOL(true);
}

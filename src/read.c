/*-------------------------------------------------------------------------
 *
 * read.c
 *	  SQL functions that read a session: fleetlm.messages and
 *	  fleetlm.last_seq.
 *
 * A read that the ring alone cannot serve first reads fleetlm.messages on
 * a fresh snapshot (tables.c: the primary key, no SPI), its rows straight
 * into the caller's tuplestore, then, if it came up short and the session
 * table says more exist, walks the session's chain of records backwards
 * through the ring (ring_chain_begin: under reclaim_lock shared, so the
 * applier cannot recycle what we read) and takes the durable records past
 * the table's last seq.  Seqs are gapless, so the union must run without a
 * hole up to the session's last durable seq; if the applier committed
 * between the two steps a hole shows, and the read is retried on a new
 * snapshot, with the tuplestore emptied first.  A record that is not yet
 * durable is never returned.
 *
 * src/read.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/int.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"

#include "append.h"
#include "args.h"
#include "fleetlm.h"
#include "read.h"
#include "record.h"
#include "ring.h"
#include "session.h"
#include "shmem.h"
#include "tables.h"

PG_FUNCTION_INFO_V1(fleetlm_messages);
PG_FUNCTION_INFO_V1(fleetlm_last_seq);

/* Hard cap of max_count */
#define FLEET_MAX_READ_COUNT	100000
#define FLEET_READ_RETRIES		1000
#define FLEET_MESSAGE_NATTS		9

static int64 read_upper(int64 after_seq, int32 max_count);
static void read_put_record(Tuplestorestate *store, TupleDesc desc, FleetRecord *rec);
static int64 read_ring_only(const char *session_id, uint32 hashcode, int64 after_seq,
							int32 max_count, Tuplestorestate *store, TupleDesc desc);

/*
 * The largest seq a read of max_count messages past after_seq can return,
 * without overflowing.
 */
static int64
read_upper(int64 after_seq, int32 max_count)
{
	int64		upper;

	if (pg_add_s64_overflow(after_seq, (int64) max_count, &upper))
		return PG_INT64_MAX;
	return upper;
}

/*
 * Reject a negative after_seq and a max_count out of [1, 100000].
 */
void
read_check_range(int64 after_seq, int32 max_count)
{
	if (after_seq < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("after_seq must not be negative: " INT64_FORMAT, after_seq)));
	if (max_count <= 0 || max_count > FLEET_MAX_READ_COUNT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_count must be between 1 and %d: %d",
						FLEET_MAX_READ_COUNT, max_count)));
}

/*
 * Put a decoded record from the ring into `store` as a fleetlm.messages
 * row, the same row the applier will insert for it.
 */
static void
read_put_record(Tuplestorestate *store, TupleDesc desc, FleetRecord *rec)
{
	FleetRecordHeader *h = rec->hdr;
	Datum		values[FLEET_MESSAGE_NATTS];
	bool		nulls[FLEET_MESSAGE_NATTS];

	memset(nulls, 0, sizeof(nulls));
	values[0] = PointerGetDatum(cstring_to_text_with_len(rec->session_id, h->session_len));
	values[1] = Int64GetDatum(h->seq);
	values[2] = PointerGetDatum(cstring_to_text_with_len(rec->sender_id, h->sender_len));
	if (h->recipient_len > 0)
		values[3] = PointerGetDatum(cstring_to_text_with_len(rec->recipient_id, h->recipient_len));
	else
		nulls[3] = true;
	values[4] = PointerGetDatum(cstring_to_text_with_len(rec->kind, h->kind_len));
	values[5] = PointerGetDatum(rec->content);
	values[6] = PointerGetDatum(rec->metadata);
	values[7] = TimestampTzGetDatum(h->created_at);
	if (h->key_len > 0)
		values[8] = PointerGetDatum(cstring_to_text_with_len(rec->key, h->key_len));
	else
		nulls[8] = true;
	tuplestore_putvalues(store, desc, values, nulls);
}

/*
 * Serve a read from the ring alone when the session table shows that every
 * message past after_seq is still in the ring, or that there is none: the
 * common case of a long-poll waking up, or a client reading what was just
 * said.  No table access then.  Returns the count, or -1 if the table is
 * needed.
 */
static int64
read_ring_only(const char *session_id, uint32 hashcode, int64 after_seq,
			   int32 max_count, Tuplestorestate *store, TupleDesc desc)
{
	LWLock	   *plock = session_partition_lock(hashcode);
	FleetSession *entry;
	uint64		last_lsn;
	int64		last_seq;
	bool		deleted;
	RingChain	chain;
	uint64		lsn;
	FleetRecordHeader hdr;
	int64		upper = read_upper(after_seq, max_count);
	bool		covered = false;
	List	   *ring = NIL;
	ListCell   *lc;
	int64		n = 0;

	LWLockAcquire(plock, LW_SHARED);
	entry = session_find_live(session_id, hashcode);
	if (entry == NULL)
	{
		LWLockRelease(plock);
		return -1;
	}
	last_lsn = entry->last_lsn;
	last_seq = entry->last_seq;
	deleted = entry->deleted;
	LWLockRelease(plock);
	if (deleted)
		session_error_missing(session_id, true);

	ring_chain_begin(&chain, last_lsn);
	if (!ring_record_live(last_lsn, chain.applied))
		covered = (last_seq <= after_seq);	/* all applied: nothing new? */
	while (ring_chain_next(&chain, &lsn, &hdr))
	{
		if (hdr.seq <= after_seq)
		{
			covered = true;
			break;
		}
		if (hdr.seq <= upper && ring_record_durable(lsn, &hdr, chain.durable))
			ring = lcons(ring_read_record(lsn), ring);
		if (hdr.seq == after_seq + 1)
		{
			covered = true;
			break;
		}
	}
	ring_chain_end(&chain);

	if (!covered)
	{
		list_free_deep(ring);
		return -1;
	}
	foreach(lc, ring)
	{
		FleetRecord rec;

		record_decode((char *) lfirst(lc), &rec);
		read_put_record(store, desc, &rec);
		n++;
	}
	return n;
}

/*
 * Put up to max_count durable messages of the session with seq > after_seq
 * into `store`, in seq order.  Returns how many.  Unknown and deleted
 * sessions are errors.  `store` must be empty: the table rows go into it
 * before the read is known to be consistent, and a retry empties it.
 */
int64
read_messages(const char *session_id, int64 after_seq, int32 max_count,
			  Tuplestorestate *store, TupleDesc desc)
{
	uint32		hashcode = session_hash_code(session_id);
	LWLock	   *plock = session_partition_lock(hashcode);
	int64		upper = read_upper(after_seq, max_count);

	/* table rows go into store as they are: the row type must be theirs */
	if (desc->natts != FLEET_MESSAGE_NATTS)
		elog(ERROR, "fleetlm: unexpected row type of fleetlm.messages (%d columns)",
			 desc->natts);
	/* a retry empties store: it must hold nothing of the caller's */
	if (tuplestore_tuple_count(store) != 0)
		elog(ERROR, "fleetlm: read_messages needs an empty tuplestore");

	{
		int64		n = read_ring_only(session_id, hashcode, after_seq, max_count,
									   store, desc);

		if (n >= 0)
			return n;
	}

	for (int attempt = 0; attempt < FLEET_READ_RETRIES; attempt++)
	{
		uint64		mark;
		List	   *ring = NIL;
		bool		exists;
		int64		table_rows;
		int64		table_last;
		int64		durable_last;
		int64		got_last;
		FleetSession *entry;
		uint64		last_lsn = 0;
		int64		last_seq = 0;
		bool		deleted = false;
		ListCell   *lc;

		CHECK_FOR_INTERRUPTS();
		if (attempt > 0)
			tuplestore_clear(store);	/* the table rows of a failed attempt */
		mark = session_eviction_mark(hashcode);
		exists = tables_read_messages(session_id, after_seq, max_count,
									  GetLatestSnapshot(), store, &table_rows);
		table_last = after_seq + table_rows;

		LWLockAcquire(plock, LW_SHARED);
		entry = session_find_live(session_id, hashcode);
		if (entry != NULL)
		{
			last_lsn = entry->last_lsn;
			last_seq = entry->last_seq;
			deleted = entry->deleted;
		}
		LWLockRelease(plock);

		if (entry == NULL)
		{
			/* tables alone are complete unless an eviction raced with us */
			if (session_evicted_since(hashcode, mark))
				continue;
			if (!exists)
				session_error_missing(session_id, false);
			got_last = table_last;
			durable_last = table_last;
		}
		else
		{
			RingChain	chain;
			uint64		lsn;
			FleetRecordHeader hdr;
			bool		found_durable = false;

			if (deleted)
				session_error_missing(session_id, true);

			durable_last = last_seq;
			got_last = table_last;
			ring_chain_begin(&chain, last_lsn);
			while (ring_chain_next(&chain, &lsn, &hdr))
			{
				if (!found_durable)
				{
					if (ring_record_durable(lsn, &hdr, chain.durable))
					{
						found_durable = true;
						durable_last = hdr.seq;
					}
					else
						durable_last = hdr.seq - 1;
				}
				if (hdr.seq <= table_last)
					break;
				if (found_durable && hdr.seq <= upper)
					ring = lcons(ring_read_record(lsn), ring);
			}
			ring_chain_end(&chain);

			/* the ring part must continue the table part without a hole */
			if (ring != NIL)
			{
				FleetRecordHeader *first = (FleetRecordHeader *) linitial(ring);
				FleetRecordHeader *last = (FleetRecordHeader *) llast(ring);

				if (first->seq != table_last + 1)
				{
					list_free_deep(ring);
					continue;
				}
				got_last = last->seq;
			}
			if (got_last < Min(upper, durable_last))
			{
				list_free_deep(ring);
				continue;
			}
		}

		/* the table rows are in store already; the ring's follow them */
		foreach(lc, ring)
		{
			FleetRecord rec;

			record_decode((char *) lfirst(lc), &rec);
			read_put_record(store, desc, &rec);
		}
		return got_last - after_seq;
	}
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("fleetlm could not read a consistent view of session \"%s\" after %d attempts",
					session_id, FLEET_READ_RETRIES),
			 errhint("The applier moved messages during every attempt; retry.")));
	return 0;					/* keep compiler quiet */
}

/*
 * The last durable seq of a session (0 if it has no messages).
 */
int64
read_last_seq(const char *session_id)
{
	uint32		hashcode = session_hash_code(session_id);
	LWLock	   *plock = session_partition_lock(hashcode);

	for (;;)
	{
		FleetSession *entry;
		FleetSessionInfo info;
		uint64		mark;

		CHECK_FOR_INTERRUPTS();
		LWLockAcquire(plock, LW_SHARED);
		entry = session_find_live(session_id, hashcode);
		if (entry != NULL)
		{
			int64		seq;

			if (entry->deleted)
			{
				LWLockRelease(plock);
				session_error_missing(session_id, true);
			}
			seq = session_durable_last_seq(entry,
										   fleet_read_pos(&fleet_shared->durable),
										   fleet_read_pos(&fleet_shared->applied));
			LWLockRelease(plock);
			return seq;
		}
		LWLockRelease(plock);

		mark = session_eviction_mark(hashcode);
		if (!session_load_info(session_id, &info, false))
			session_error_missing(session_id, false);
		if (!session_evicted_since(hashcode, mark))
			return info.last_seq;
	}
}

/*
 * If the session has an entry in the session table, fill *tail with its
 * last durable seq and, when that message is still in the ring, its time
 * and sender.  Returns false if there is no (live) entry: the tables alone
 * then know the session.  Callers that combine this with a table read
 * guard against a racing eviction with session_eviction_mark(hashcode).
 */
bool
read_session_tail(const char *session_id, SessionTail *tail)
{
	uint32		hashcode = session_hash_code(session_id);
	LWLock	   *plock = session_partition_lock(hashcode);
	FleetSession *entry;
	uint64		last_lsn;
	int64		seq;
	RingChain	chain;
	uint64		lsn;
	FleetRecordHeader hdr;

	memset(tail, 0, sizeof(*tail));
	LWLockAcquire(plock, LW_SHARED);
	entry = session_find_live(session_id, hashcode);
	if (entry == NULL)
	{
		LWLockRelease(plock);
		return false;
	}
	last_lsn = entry->last_lsn;
	seq = entry->last_seq;
	tail->deleted = entry->deleted;
	LWLockRelease(plock);

	tail->last_seq = seq;
	if (tail->deleted)
		return true;

	ring_chain_begin(&chain, last_lsn);
	while (ring_chain_next(&chain, &lsn, &hdr))
	{
		if (ring_record_durable(lsn, &hdr, chain.durable))
		{
			char	   *buf = ring_read_record(lsn);
			FleetRecord rec;

			record_decode(buf, &rec);
			tail->in_ring = true;
			tail->last_seq = hdr.seq;
			tail->last_at = hdr.created_at;
			tail->last_sender = record_text(rec.sender_id, hdr.sender_len);
			pfree(buf);
			break;
		}
		tail->last_seq = hdr.seq - 1;
	}
	ring_chain_end(&chain);
	return true;
}

/*
 * fleetlm.messages(session_id, after_seq, max_count) -> SETOF fleetlm.messages
 */
Datum
fleetlm_messages(PG_FUNCTION_ARGS)
{
	char	   *session_id = args_text(fcinfo, 0, "session_id");
	int64		after_seq;
	int32		max_count;
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	after_seq = args_int64(fcinfo, 1, "after_seq");
	max_count = args_int32(fcinfo, 2, "max_count");
	args_check_id(session_id, "session_id");
	read_check_range(after_seq, max_count);

	fleetlm_wait_ready();
	append_read_own_writes();
	InitMaterializedSRF(fcinfo, 0);
	(void) read_messages(session_id, after_seq, max_count,
						 rsinfo->setResult, rsinfo->setDesc);
	return (Datum) 0;
}

/*
 * fleetlm.last_seq(session_id) -> bigint
 */
Datum
fleetlm_last_seq(PG_FUNCTION_ARGS)
{
	char	   *session_id = args_text(fcinfo, 0, "session_id");

	args_check_id(session_id, "session_id");
	fleetlm_wait_ready();
	append_read_own_writes();
	PG_RETURN_INT64(read_last_seq(session_id));
}

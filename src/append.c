/*-------------------------------------------------------------------------
 *
 * append.c
 *	  SQL functions that write: fleetlm.create_session and fleetlm.append.
 *
 * An append, once its arguments are checked:
 *	1. takes the session's partition lock (loading the session from the
 *	   tables on a miss: one SPI query, then never again while cached);
 *	2. takes insert_lock; if the ring lacks space, releases both and waits
 *	   on space_cv; otherwise assigns seq = last_seq + 1, reserves the next
 *	   bytes of the log and copies the record into the ring;
 *	3. releases the locks, sets the writer's latch, and sleeps on
 *	   durable_cv until the writer has fdatasynced past the record.
 * No system call on this path but waking the writer, no SPI once cached.
 *
 * Appends are not transactional: once append() returns, the message is
 * durable even if the caller's transaction aborts (like nextval()).
 *
 * src/append.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/time.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "append.h"
#include "applier.h"
#include "applywait.h"
#include "fleetlm.h"
#include "record.h"
#include "pipeline.h"
#include "ring.h"
#include "session.h"
#include "shmem.h"
#include "spi_util.h"
#include "walwriter.h"

PG_FUNCTION_INFO_V1(fleetlm_create_session);
PG_FUNCTION_INFO_V1(fleetlm_append);
PG_FUNCTION_INFO_V1(fleetlm_append_batch);
PG_FUNCTION_INFO_V1(fleetlm_delete_session);

/* Most messages in one append_batch() */
#define FLEET_MAX_BATCH		1000

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
	bool		is_delete;
	/* results */
	int64		first_seq;
	uint64		end;			/* log position after the last record */
	bool		duplicate;		/* the key was found: nothing written */
} AppendWrite;

static void append_check_writer(void);
static void append_write(AppendWrite *w);
static int64 append_key_in_table(const char *session_id, const char *key);
static int	append_key_in_ring(FleetSession *entry, const char *key,
							   uint64 applied0, int64 *seq, uint64 *end);
static void append_wait_durable(uint64 end, const char *session_id, int64 seq);
static void append_finish(AppendWrite *w);
static void append_make_ulid(char *out);
static void append_wait_deletion(const char *session_id);
static void append_check_message(const char *kind, Jsonb *content, Jsonb *metadata);
static int	append_parse_batch(Jsonb *batch, FleetRecordInput **out);
static void append_batch_context(void *arg);

/*
 * A text argument as a C string; NULL is an error naming the argument.
 */
char *
fleet_arg_text(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", name)));
	return text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

/*
 * Integer arguments; NULL is an error naming the argument.
 */
int64
fleet_arg_int64(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", name)));
	return PG_GETARG_INT64(argno);
}

int32
fleet_arg_int32(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", name)));
	return PG_GETARG_INT32(argno);
}

/*
 * A jsonb argument, detoasted; NULL is an error naming the argument.
 */
Jsonb *
fleet_arg_jsonb(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", name)));
	return PG_GETARG_JSONB_P(argno);
}

void
fleet_check_object(Jsonb *jb, const char *name)
{
	if (!JB_ROOT_IS_OBJECT(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a JSON object, not %s", name,
						JB_ROOT_IS_SCALAR(jb) ? "a scalar" : "an array")));
}

/*
 * A ULID: 48 bits of milliseconds since the epoch and 80 random bits in
 * Crockford's base32, 26 characters that sort by creation time.
 */
static void
append_make_ulid(char *out)
{
	static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
	uint64		ms;
	uint8		rnd[10];
	int			i;
	struct timeval tv;

	gettimeofday(&tv, NULL);
	ms = (uint64) tv.tv_sec * 1000 + tv.tv_usec / 1000;
	if (!pg_strong_random(rnd, sizeof(rnd)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random session id")));

	for (i = 9; i >= 0; i--)
	{
		out[i] = alphabet[ms & 31];
		ms >>= 5;
	}
	/* 80 random bits = 16 characters of 5 bits */
	for (i = 0; i < 16; i++)
	{
		int			bit = i * 5;
		int			byte = bit / 8;
		int			shift = bit % 8;
		unsigned	v = ((unsigned) rnd[byte] << 8) | (byte + 1 < 10 ? rnd[byte + 1] : 0);

		out[10 + i] = alphabet[(v >> (11 - shift)) & 31];
	}
	out[26] = '\0';
}

/*
 * If the id belongs to a deleted session whose deletion the applier has not
 * carried out yet, wait until it has: its row is still in the table.
 */
static void
append_wait_deletion(const char *session_id)
{
	uint32		hashcode;
	LWLock	   *plock;
	FleetSession *entry;
	uint64		tombstone = 0;

	if (fleet_shared == NULL ||
		pg_atomic_read_u32(&fleet_shared->state) != FLEET_STATE_READY)
		return;
	hashcode = session_hash_code(session_id);
	plock = session_partition_lock(hashcode);
	LWLockAcquire(plock, LW_SHARED);
	entry = session_find_live(session_id, hashcode);
	if (entry != NULL && entry->deleted)
		tombstone = entry->last_lsn;
	LWLockRelease(plock);
	if (tombstone != 0)
		applywait_applied(tombstone + 1, "the deletion of a session with this id");
}

/*
 * fleetlm.create_session(user_id, agent_id, metadata, session_id) -> text
 *
 * Transactional, unlike append: the session row is an ordinary insert.
 */
Datum
fleetlm_create_session(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	char	   *user_id = fleet_arg_text(fcinfo, 0, "user_id");
	char	   *agent_id = fleet_arg_text(fcinfo, 1, "agent_id");
	Jsonb	   *metadata = fleet_arg_jsonb(fcinfo, 2, "metadata");
	char	   *session_id;
	char		ulid[27];
	Oid			argtypes[4] = {TEXTOID, TEXTOID, TEXTOID, JSONBOID};
	Datum		values[4];
	FleetSpiContext spi;
	int			ret;

	fleetlm_require_shmem();
	fleetlm_require_database();
	session_check_id("user_id", user_id);
	session_check_id("agent_id", agent_id);
	fleet_check_object(metadata, "metadata");
	if (PG_ARGISNULL(3))
	{
		append_make_ulid(ulid);
		session_id = ulid;
	}
	else
	{
		session_id = text_to_cstring(PG_GETARG_TEXT_PP(3));
		session_check_id("session_id", session_id);
		append_wait_deletion(session_id);
	}

	fleet_spi_connect(&spi);
	plan = fleet_spi_plan(&plan,
						  "INSERT INTO fleetlm.sessions (session_id, user_id, agent_id, metadata)"
						  " VALUES ($1, $2, $3, $4) ON CONFLICT (session_id) DO NOTHING",
						  4, argtypes);
	values[0] = CStringGetTextDatum(session_id);
	values[1] = CStringGetTextDatum(user_id);
	values[2] = CStringGetTextDatum(agent_id);
	values[3] = JsonbPGetDatum(metadata);
	ret = SPI_execute_plan(plan, values, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "fleetlm: insert into fleetlm.sessions failed: %s",
			 SPI_result_code_string(ret));
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNIQUE_VIOLATION),
				 errmsg("fleetlm session \"%s\" already exists", session_id)));
	fleet_spi_finish(&spi);

	PG_RETURN_TEXT_P(cstring_to_text(session_id));
}

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
 * The seq of the message with this idempotency key in the table, or 0.
 * Reads on a fresh snapshot.
 */
static int64
append_key_in_table(const char *session_id, const char *key)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	FleetSpiContext spi;
	int64		seq = 0;
	int			ret;

	fleet_spi_connect(&spi);
	plan = fleet_spi_plan(&plan,
						  "SELECT m.seq FROM fleetlm.messages m"
						  " WHERE m.session_id OPERATOR(pg_catalog.=) $1"
						  "   AND m.idempotency_key OPERATOR(pg_catalog.=) $2"
						  " ORDER BY m.seq LIMIT 1",
						  2, argtypes);
	values[0] = CStringGetTextDatum(session_id);
	values[1] = CStringGetTextDatum(key);
	ret = SPI_execute_snapshot(plan, values, NULL, GetLatestSnapshot(),
							   InvalidSnapshot, true, false, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "fleetlm: idempotency key lookup failed: %s",
			 SPI_result_code_string(ret));
	if (SPI_processed == 1)
	{
		bool		isnull;

		seq = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
	}
	fleet_spi_finish(&spi);
	return seq;
}

/*
 * Look for the idempotency key among the session's records still in the
 * ring; caller holds the partition lock.  Returns 1 (found: *seq, *end),
 * 0 (not there), or -1 if the applier moved since `applied0`, when the
 * table lookup was made: records may have left the ring unseen, so the
 * caller must look again.
 */
static int
append_key_in_ring(FleetSession *entry, const char *key, uint64 applied0,
				   int64 *seq, uint64 *end)
{
	size_t		keylen = strlen(key);
	RingChain	chain;
	uint64		lsn;
	FleetRecordHeader hdr;
	int			result = 0;

	ring_chain_begin(&chain, entry->last_lsn);
	if (chain.applied != applied0)
	{
		ring_chain_end(&chain);
		return -1;
	}
	while (ring_chain_next(&chain, &lsn, &hdr))
	{
		char	   *buf;
		FleetRecord rec;
		bool		match;

		if (hdr.type != FLEET_REC_APPEND || hdr.key_len != keylen)
			continue;
		buf = ring_read_record(lsn);
		record_decode(buf, &rec);
		match = (memcmp(rec.key, key, keylen) == 0);
		pfree(buf);
		if (match)
		{
			*seq = hdr.seq;
			*end = lsn + FLEET_REC_ALIGN(hdr.total_len);
			result = 1;
			break;
		}
	}
	ring_chain_end(&chain);
	return result;
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

		if (w->key)
		{
			applied0 = fleet_read_pos(&fleet_shared->applied);
			pg_memory_barrier();
			table_seq = append_key_in_table(w->session_id, w->key);
		}

		entry = session_acquire(w->session_id, hashcode);

		if (w->key)
		{
			int64		dup_seq;
			uint64		dup_end;
			int			found;

			if (table_seq > 0)
			{
				LWLockRelease(plock);
				w->duplicate = true;
				w->first_seq = table_seq;
				w->end = 0;
				return;
			}
			found = append_key_in_ring(entry, w->key, applied0, &dup_seq, &dup_end);
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
 * Sleep until the log is durable up to `end`.  A cancel or termination
 * while waiting says, as synchronous replication does, that the message
 * may still become durable, then lets the error through; results that a
 * pipeline held back for this wait are dropped (pipeline_abandon).
 */
static void
append_wait_durable(uint64 end, const char *session_id, int64 seq)
{
	if (fleet_read_pos(&fleet_shared->durable) >= end)
		return;

	PG_TRY();
	{
		(void) walwriter_flush_for(end, false);
	}
	PG_CATCH();
	{
		pipeline_abandon();
		/* nobody may be flushing for us now: let the writer do it */
		walwriter_wake();
		ereport(WARNING,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("canceled the wait for durability of message " INT64_FORMAT " of fleetlm session \"%s\"",
						seq, session_id),
				 errdetail("The message was appended and may still become durable.")));
		PG_RE_THROW();
	}
	PG_END_TRY();
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
		uint64		end;

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
		end = Max(w->end, pipeline_owed_position());
		append_wait_durable(end, w->session_id, w->first_seq + w->nrec - 1);
		pipeline_done(end);
	}
	else if (!w->duplicate)
		walwriter_wake();
}

/*
 * Reads see this backend's own appends: wait for those a pipeline left
 * undurable so far (see pipeline.c).
 */
void
fleet_read_own_writes(void)
{
	pipeline_settle();
}

/*
 * Checks shared by append and append_batch for one message.
 */
static void
append_check_message(const char *kind, Jsonb *content, Jsonb *metadata)
{
	Size		size;

	session_check_id("kind", kind);
	fleet_check_object(metadata, "metadata");
	size = VARSIZE(content) + VARSIZE(metadata);
	if (size > FLEETLM_MAX_MESSAGE_SIZE)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("fleetlm message is too large (%zu bytes of content and metadata; fleetlm.max_message_size is %d kB)",
						size, fleetlm_max_message_size_kb)));
}

/*
 * fleetlm.append(session_id, sender_id, kind, content, metadata,
 *				  idempotency_key) -> bigint
 */
Datum
fleetlm_append(PG_FUNCTION_ARGS)
{
	char	   *session_id = fleet_arg_text(fcinfo, 0, "session_id");
	char	   *sender_id = fleet_arg_text(fcinfo, 1, "sender_id");
	char	   *kind = fleet_arg_text(fcinfo, 2, "kind");
	Jsonb	   *content = fleet_arg_jsonb(fcinfo, 3, "content");
	Jsonb	   *metadata = fleet_arg_jsonb(fcinfo, 4, "metadata");
	char	   *key = NULL;
	FleetRecordInput in;
	AppendWrite w;

	session_check_id("session_id", session_id);
	session_check_id("sender_id", sender_id);
	append_check_message(kind, content, metadata);
	if (PG_NARGS() > 5 && !PG_ARGISNULL(5))
	{
		size_t		len;

		key = text_to_cstring(PG_GETARG_TEXT_PP(5));
		len = strlen(key);
		if (len == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("idempotency_key must not be empty")));
		if (len > FLEETLM_KEY_MAXLEN)
			ereport(ERROR,
					(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
					 errmsg("idempotency_key is too long (%zu bytes; the limit is %d)",
							len, FLEETLM_KEY_MAXLEN)));
	}

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
 * Turn the messages argument of append_batch into record inputs: a JSON
 * array of 1..FLEET_MAX_BATCH objects with "kind" (a string), "content"
 * (any JSON) and optionally "metadata" (an object), no other keys, and
 * together within fleetlm.max_message_size.  Returns the count.
 */
static int
append_parse_batch(Jsonb *batch, FleetRecordInput **out)
{
	int			n;
	Size		total = 0;
	FleetRecordInput *inputs;
	ErrorContextCallback errcb;
	int			elemno;
	Jsonb	   *empty = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));

	if (!JB_ROOT_IS_ARRAY(batch) || JB_ROOT_IS_SCALAR(batch))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("messages must be a JSON array of message objects")));
	n = JB_ROOT_COUNT(batch);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("messages must not be an empty array")));
	if (n > FLEET_MAX_BATCH)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many messages in one batch (%d; the limit is %d)",
						n, FLEET_MAX_BATCH)));

	inputs = palloc0(n * sizeof(FleetRecordInput));
	elemno = 0;
	errcb.callback = append_batch_context;
	errcb.arg = &elemno;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	for (int i = 0; i < n; i++)
	{
		JsonbValue *elem = getIthJsonbValueFromContainer(&batch->root, i);
		JsonbContainer *obj;
		JsonbValue	v;
		int			nkeys = 0;
		char	   *kind;

		if (elem->type != jbvBinary || !JsonContainerIsObject(elem->val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("element %d of messages is not a JSON object", i + 1)));
		obj = elem->val.binary.data;

		if (getKeyJsonValueFromContainer(obj, "kind", 4, &v) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("element %d of messages has no \"kind\"", i + 1)));
		if (v.type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("\"kind\" of element %d of messages must be a string", i + 1)));
		kind = pnstrdup(v.val.string.val, v.val.string.len);
		nkeys++;

		if (getKeyJsonValueFromContainer(obj, "content", 7, &v) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("element %d of messages has no \"content\"", i + 1)));
		inputs[i].content = JsonbValueToJsonb(&v);
		nkeys++;

		if (getKeyJsonValueFromContainer(obj, "metadata", 8, &v) != NULL)
		{
			inputs[i].metadata = JsonbValueToJsonb(&v);
			nkeys++;
		}
		else
			inputs[i].metadata = empty;

		if (JsonContainerSize(obj) != nkeys)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("element %d of messages has keys other than \"kind\", \"content\" and \"metadata\"", i + 1)));

		elemno = i + 1;
		append_check_message(kind, inputs[i].content, inputs[i].metadata);
		elemno = 0;
		inputs[i].type = FLEET_REC_APPEND;
		inputs[i].kind = kind;
		total += VARSIZE(inputs[i].content) + VARSIZE(inputs[i].metadata);
	}
	error_context_stack = errcb.previous;
	if (total > FLEETLM_MAX_MESSAGE_SIZE)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("fleetlm batch is too large (%zu bytes of content and metadata; fleetlm.max_message_size is %d kB)",
						total, fleetlm_max_message_size_kb)));
	*out = inputs;
	return n;
}

static void
append_batch_context(void *arg)
{
	int			elemno = *(int *) arg;

	if (elemno > 0)
		errcontext("element %d of messages", elemno);
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
		char	   *session_id = fleet_arg_text(fcinfo, 0, "session_id");
		char	   *sender_id = fleet_arg_text(fcinfo, 1, "sender_id");
		Jsonb	   *batch = fleet_arg_jsonb(fcinfo, 2, "messages");
		FleetRecordInput *inputs;
		TimestampTz now;
		AppendWrite w;
		int			n;
		MemoryContext oldcxt;

		session_check_id("session_id", session_id);
		session_check_id("sender_id", sender_id);
		n = append_parse_batch(batch, &inputs);

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
	char	   *session_id = fleet_arg_text(fcinfo, 0, "session_id");
	FleetRecordInput in;
	AppendWrite w;

	session_check_id("session_id", session_id);
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

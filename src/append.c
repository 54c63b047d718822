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
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "append.h"
#include "applier.h"
#include "fleetlm.h"
#include "record.h"
#include "ring.h"
#include "session.h"
#include "shmem.h"
#include "spi_util.h"
#include "walwriter.h"

PG_FUNCTION_INFO_V1(fleetlm_create_session);
PG_FUNCTION_INFO_V1(fleetlm_append);

static void append_check_writer(void);
static uint64 append_insert(const char *session_id, FleetRecordInput *in,
							const char *sender_id, int64 *seq);
static void append_wait_space(Size len);
static void append_wait_durable(uint64 end, const char *session_id, int64 seq);
static void append_make_ulid(char *out);

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
 * Sleep until the ring might have room for len more bytes.
 */
static void
append_wait_space(Size len)
{
	pg_atomic_fetch_add_u64(&fleet_shared->space_waits, 1);
	ConditionVariablePrepareToSleep(&fleet_shared->space_cv);
	for (;;)
	{
		uint64		inserted = fleet_read_pos(&fleet_shared->inserted);
		uint64		applied = fleet_read_pos(&fleet_shared->applied);

		if (inserted + len - applied <= fleet_shared->ring_size)
			break;
		applier_wake();
		ConditionVariableSleep(&fleet_shared->space_cv, FLEETLM_WAIT_EVENT);
	}
	ConditionVariableCancelSleep();
}

/*
 * Assign the next seq of the session and copy the record into the ring.
 * Returns the end position of the record; *seq gets its seq.
 */
static uint64
append_insert(const char *session_id, FleetRecordInput *in,
			  const char *sender_id, int64 *seq)
{
	uint32		hashcode = session_hash_code(session_id);
	LWLock	   *plock = session_partition_lock(hashcode);
	char	   *rec = NULL;
	Size		len = 0;
	Size		alen = 0;
	pg_crc32c	payload_crc = 0;
	const char *built_recipient = NULL;

	for (;;)
	{
		FleetSession *entry = session_acquire(session_id, hashcode);
		const char *recipient;
		FleetRecordHeader *hdr;
		uint64		lsn;

		/* the other party of the session, if the sender is one of them */
		if (strcmp(sender_id, entry->user_id) == 0)
			recipient = entry->agent_id;
		else if (strcmp(sender_id, entry->agent_id) == 0)
			recipient = entry->user_id;
		else
			recipient = NULL;

		if (rec == NULL ||
			(recipient == NULL) != (built_recipient == NULL) ||
			(recipient != NULL && strcmp(recipient, built_recipient) != 0))
		{
			if (rec)
				pfree(rec);
			in->recipient_id = built_recipient = recipient ? pstrdup(recipient) : NULL;
			rec = record_build(in, &len, &payload_crc);
			alen = FLEET_REC_ALIGN(len);
		}

		LWLockAcquire(fleet_shared->insert_lock, LW_EXCLUSIVE);
		lsn = pg_atomic_read_u64(&fleet_shared->inserted);
		if (lsn + alen - fleet_read_pos(&fleet_shared->applied) > fleet_shared->ring_size)
		{
			LWLockRelease(fleet_shared->insert_lock);
			LWLockRelease(plock);
			append_wait_space(alen);
			continue;
		}

		hdr = (FleetRecordHeader *) rec;
		hdr->lsn = lsn;
		hdr->prev_lsn = entry->last_lsn;
		hdr->seq = entry->last_seq + 1;
		hdr->flags = 0;
		record_finish(hdr, payload_crc);
		ring_write(lsn, rec, alen);
		fleet_write_pos(&fleet_shared->inserted, lsn + alen);
		fleet_count(&fleet_shared->appends, 1);
		fleet_count(&fleet_shared->append_bytes, alen);
		LWLockRelease(fleet_shared->insert_lock);

		entry->last_seq = hdr->seq;
		entry->last_lsn = lsn;
		entry->last_used = in->created_at;
		*seq = hdr->seq;
		LWLockRelease(plock);

		pfree(rec);
		return lsn + alen;
	}
}

/*
 * Sleep until the writer has made [.., end) durable.  A cancel or
 * termination while waiting says, as synchronous replication does, that
 * the message may still become durable, then lets the error through.
 */
static void
append_wait_durable(uint64 end, const char *session_id, int64 seq)
{
	if (fleet_read_pos(&fleet_shared->durable) >= end)
		return;

	PG_TRY();
	{
		ConditionVariablePrepareToSleep(&fleet_shared->durable_cv);
		while (fleet_read_pos(&fleet_shared->durable) < end)
			ConditionVariableSleep(&fleet_shared->durable_cv, FLEETLM_WAIT_EVENT);
		ConditionVariableCancelSleep();
	}
	PG_CATCH();
	{
		ereport(WARNING,
				(errmsg("canceled the wait for durability of message " INT64_FORMAT " of fleetlm session \"%s\"",
						seq, session_id),
				 errdetail("The message was appended and may still become durable.")));
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * fleetlm.append(session_id, sender_id, kind, content, metadata) -> bigint
 */
Datum
fleetlm_append(PG_FUNCTION_ARGS)
{
	char	   *session_id = fleet_arg_text(fcinfo, 0, "session_id");
	char	   *sender_id = fleet_arg_text(fcinfo, 1, "sender_id");
	char	   *kind = fleet_arg_text(fcinfo, 2, "kind");
	Jsonb	   *content = fleet_arg_jsonb(fcinfo, 3, "content");
	Jsonb	   *metadata = fleet_arg_jsonb(fcinfo, 4, "metadata");
	FleetRecordInput in;
	Size		size;
	int64		seq;
	uint64		end;

	session_check_id("session_id", session_id);
	session_check_id("sender_id", sender_id);
	session_check_id("kind", kind);
	fleet_check_object(metadata, "metadata");
	size = VARSIZE(content) + VARSIZE(metadata);
	if (size > FLEETLM_MAX_MESSAGE_SIZE)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("fleetlm message is too large (%zu bytes of content and metadata; fleetlm.max_message_size is %d kB)",
						size, fleetlm_max_message_size_kb)));

	fleetlm_wait_ready();
	append_check_writer();

	memset(&in, 0, sizeof(in));
	in.type = FLEET_REC_APPEND;
	in.session_id = session_id;
	in.sender_id = sender_id;
	in.kind = kind;
	in.content = content;
	in.metadata = metadata;
	in.created_at = GetCurrentTimestamp();

	end = append_insert(session_id, &in, sender_id, &seq);

	walwriter_wake();
	if (end - fleet_read_pos(&fleet_shared->applied) > fleet_shared->ring_size / 4)
		applier_wake();

	if (fleetlm_synchronous_append)
		append_wait_durable(end, session_id, seq);

	PG_RETURN_INT64(seq);
}

/*-------------------------------------------------------------------------
 *
 * idempotency.c
 *	  Idempotency keys of appends: finding an earlier message of a session
 *	  with the same key, in the table or in the ring.
 *
 * A keyed append looks in two places.  First in fleetlm.messages, with SPI
 * on a fresh snapshot, before it takes the session's partition lock (no
 * query runs under an LWLock: it could wait for table locks with interrupts
 * held off).  Then, under the partition lock, so that no other append of
 * the session can slip in, among the session's records still in the ring.  Between the two the applier may move records from
 * the ring into the table after the snapshot was taken: such a record is
 * in neither view.  So the table lookup notes `applied` before its
 * snapshot, and the ring lookup, which reads `applied` again under
 * reclaim_lock, reports a change; the append then looks again from the
 * start.
 *
 * A caller that knows the key can only be on a message after seq S (the
 * dispatcher: the answer to turn T comes after the user's message T) may
 * look in the ring first and stop at S: if the walk reaches a record with
 * seq <= S, every later record is in the ring, and the table cannot hold
 * the key, so the query is saved (idempotency_find_in_ring_after).
 *
 * src/idempotency.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"

#include "fleetlm.h"
#include "idempotency.h"
#include "record.h"
#include "ring.h"
#include "shmem.h"
#include "spi_util.h"


static int	idempotency_walk(RingChain *chain, const char *key, int64 after_seq,
							 int64 *seq, uint64 *end, bool *stopped);

/*
 * Walk a begun chain for the key, newest record first, stopping at the
 * first record with seq <= after_seq (0: walk it all); *stopped says
 * whether it got there.  Returns 1 (found: its seq in *seq, the log
 * position after it in *end) or 0.
 */
static int
idempotency_walk(RingChain *chain, const char *key, int64 after_seq,
				 int64 *seq, uint64 *end, bool *stopped)
{
	size_t		keylen = strlen(key);
	uint64		lsn;
	FleetRecordHeader hdr;

	*stopped = false;
	while (ring_chain_next(chain, &lsn, &hdr))
	{
		char	   *buf;
		FleetRecord rec;
		bool		match;

		if (hdr.type != FLEET_REC_APPEND)
			continue;
		if (hdr.seq <= after_seq)
		{
			*stopped = true;
			return 0;
		}
		if (hdr.key_len != keylen)
			continue;
		buf = ring_read_record(lsn);
		record_decode(buf, &rec);
		match = (memcmp(rec.key, key, keylen) == 0);
		pfree(buf);
		if (match)
		{
			*seq = hdr.seq;
			*end = lsn + FLEET_REC_ALIGN(hdr.total_len);
			return 1;
		}
	}
	return 0;
}

/*
 * Like idempotency_find_in_ring, for a key that can only be on a record
 * with seq > after_seq, with no table lookup before it: the walk stops at
 * the first record with seq <= after_seq, and *complete says whether it got
 * there (then the table need not be searched: every record after it is in
 * the ring).  Returns 1 (found) or 0.  Caller holds the partition lock.
 */
int
idempotency_find_in_ring_after(FleetSession *entry, const char *key,
							   int64 after_seq, int64 *seq, uint64 *end,
							   bool *complete)
{
	RingChain	chain;
	int			result;

	ring_chain_begin(&chain, entry->last_lsn);
	result = idempotency_walk(&chain, key, after_seq, seq, end, complete);
	ring_chain_end(&chain);
	return result;
}

/*
 * Reject an idempotency key that is empty or too long.
 */
void
idempotency_check_key(const char *key)
{
	size_t		len = strlen(key);

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

/*
 * The seq of the session's message with this key in the table, or 0.
 * Reads on a fresh snapshot; *applied gets the applier's position from
 * before it, for idempotency_find_in_ring.
 */
int64
idempotency_find_in_table(const char *session_id, const char *key,
						  uint64 *applied)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	FleetSpiContext spi;
	int64		seq = 0;
	int			ret;

	*applied = fleet_read_pos(&fleet_shared->applied);
	pg_memory_barrier();

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
 * Look for the key among the session's records still in the ring; caller
 * holds the partition lock.  Returns 1 (found: its seq in *seq, the log
 * position after it in *end), 0 (not there), or -1 if the applier moved
 * since `applied`, noted by idempotency_find_in_table: records may have
 * left the ring unseen, so the caller must look again.
 */
int
idempotency_find_in_ring(FleetSession *entry, const char *key, uint64 applied,
						 int64 *seq, uint64 *end)
{
	RingChain	chain;
	bool		stopped;
	int			result;

	ring_chain_begin(&chain, entry->last_lsn);
	if (chain.applied != applied)
	{
		ring_chain_end(&chain);
		return -1;
	}
	result = idempotency_walk(&chain, key, 0, seq, end, &stopped);
	ring_chain_end(&chain);
	return result;
}

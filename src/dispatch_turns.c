/*-------------------------------------------------------------------------
 *
 * dispatch_turns.c
 *	  The dispatcher's table of turns, and how it is derived from the log.
 *
 * A session has an unanswered turn while its user's last durable message
 * (user_seq, U) is newer than the last turn answered (resolved, R); a turn
 * T is answered iff the log holds a message with idempotency key
 * 'turn:<T>' from the session's agent: the reply or an agent_error.  The
 * table holds exactly the sessions with something to do, and is derived
 * from durable state only:
 *	- turns_resync reads fleetlm.pending_turns (the applier keeps it in the
 *	  same transaction as the rows it applies) and the applier's position,
 *	  in one snapshot, and puts the dispatcher's log cursor there;
 *	- turns_tail then reads every durable record from the cursor on, in the
 *	  ring: users' messages raise U, replies raise R, tombstones drop the
 *	  session.
 * So a restart, or a cursor the applier overtook (the records left the
 * ring), costs a resync, never a turn.  The in-memory rest (debounce
 * clocks, attempts, back-off) is advisory: lost, a turn just runs again
 * sooner.  The HTTP call is therefore at-least-once; the reply is appended
 * with key 'turn:<T>', so the log holds it exactly once.
 *
 * Locking: see dispatch.h.  The dispatcher takes turn_lock exclusively
 * only around changes of the shared hash and of the fields the view shows;
 * fleetlm.agent_turns() copies entries out under the shared lock.  Records
 * are read from the ring under reclaim_lock shared (ring.h), copied into
 * private memory first.
 *
 * src/dispatch_turns.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "dispatch.h"
#include "dispatch_history.h"
#include "record.h"
#include "ring.h"
#include "session.h"
#include "shmem.h"
#include "spi_util.h"
#include "stream.h"

PG_FUNCTION_INFO_V1(fleetlm_agent_turns);

DispatchShared *dispatch_shared = NULL;
static HTAB *turn_table = NULL;

/* a session found no room in the table: resync once there is room */
bool		turns_overflowed = false;

/*
 * The dispatcher's own dense list of the table's entries (dynahash entries
 * never move), so that its scans, several per loop, cost the entries, not
 * the table's buckets.  DispatchTurn.index is an entry's place in it.
 */
static DispatchTurn **turn_list = NULL;
static int	turn_list_n = 0;

/* Most bytes of log read per turns_tail call */
#define TURNS_TAIL_CHUNK	(1024 * 1024)

static bool turns_session_parties(const char *session_id, char *user_id,
								  char *agent_id);
static void turns_apply_record(FleetRecord *rec);

/*
 * Shared memory of the dispatcher: the control block and the turn table.
 */
Size
dispatch_shmem_size(void)
{
	Size		size = MAXALIGN(sizeof(DispatchShared));

	size = add_size(size, hash_estimate_size(fleetlm_dispatch_max_turns,
											 sizeof(DispatchTurn)));
	return size;
}

void
dispatch_request_locks(void)
{
	RequestNamedLWLockTranche("fleetlm_dispatch", 1);
}

/*
 * Attach to (in the postmaster: create) the control block and the turn
 * table; runs under AddinShmemInitLock.
 */
void
dispatch_shmem_init(void)
{
	bool		found;
	HASHCTL		ctl;

	dispatch_shared = ShmemInitStruct("fleetlm dispatch", sizeof(DispatchShared),
									  &found);
	if (!found)
	{
		memset(dispatch_shared, 0, sizeof(DispatchShared));
		dispatch_shared->turn_lock = &GetNamedLWLockTranche("fleetlm_dispatch")[0].lock;
		pg_atomic_init_u64(&dispatch_shared->agents_version, 0);
		pg_atomic_init_u64(&dispatch_shared->turns_started, 0);
		pg_atomic_init_u64(&dispatch_shared->turns_completed, 0);
		pg_atomic_init_u64(&dispatch_shared->turns_failed, 0);
		pg_atomic_init_u64(&dispatch_shared->attempts_retried, 0);
		pg_atomic_init_u64(&dispatch_shared->http_usec, 0);
		pg_atomic_init_u32(&dispatch_shared->in_flight, 0);
		pg_atomic_init_u32(&dispatch_shared->turns_tracked, 0);
	}
	ctl.keysize = FLEETLM_ID_MAXLEN + 1;
	ctl.entrysize = sizeof(DispatchTurn);
	turn_table = ShmemInitHash("fleetlm turns",
							   fleetlm_dispatch_max_turns,
							   fleetlm_dispatch_max_turns,
							   &ctl, HASH_ELEM | HASH_STRINGS);
}

/*
 * Wake the dispatcher: durable records to read, or agents changed.
 */
void
dispatch_wake(void)
{
	Latch	   *latch;

	if (dispatch_shared == NULL)
		return;
	latch = dispatch_shared->latch;
	if (latch != NULL)
		SetLatch(latch);
}

void
turns_lock(void)
{
	LWLockAcquire(dispatch_shared->turn_lock, LW_EXCLUSIVE);
}

void
turns_unlock(void)
{
	LWLockRelease(dispatch_shared->turn_lock);
}

/*
 * The entry of a session, or NULL.  Dispatcher only (no lock needed: it is
 * the only writer).
 */
DispatchTurn *
turns_find(const char *session_id)
{
	return hash_search(turn_table, session_id, HASH_FIND, NULL);
}

/*
 * The entry of a session, created WAITING if new; NULL if the table is
 * full.  Caller holds turn_lock exclusively.
 */
DispatchTurn *
turns_enter(const char *session_id, const char *user_id, const char *agent_id)
{
	DispatchTurn *t;
	bool		found;

	/* the bound is ours: a shared hash would borrow spare shared memory */
	if (hash_get_num_entries(turn_table) >= fleetlm_dispatch_max_turns &&
		hash_search(turn_table, session_id, HASH_FIND, NULL) == NULL)
		return NULL;
	t = hash_search(turn_table, session_id, HASH_ENTER_NULL, &found);
	if (t == NULL)
		return NULL;
	if (!found)
	{
		if (turn_list == NULL)
			turn_list = MemoryContextAlloc(TopMemoryContext,
										   sizeof(DispatchTurn *) * (fleetlm_dispatch_max_turns + 1));
		t->index = turn_list_n;
		turn_list[turn_list_n++] = t;
		strlcpy(t->agent_id, agent_id, sizeof(t->agent_id));
		strlcpy(t->user_id, user_id, sizeof(t->user_id));
		t->user_seq = 0;
		t->resolved = 0;
		t->turn = 0;
		t->attempt = 0;
		t->next_chunk = 1;
		t->state = TURN_WAITING;
		t->first_at = t->last_at = t->due_at = GetCurrentTimestamp();
		t->started_at = 0;
		t->last_status = 0;
		t->last_error[0] = '\0';
		t->xfer = -1;
		t->deleted = false;
		pg_atomic_fetch_add_u32(&dispatch_shared->turns_tracked, 1);
	}
	return t;
}

/*
 * Forget a session's entry.  Caller holds turn_lock exclusively.
 */
void
turns_remove(DispatchTurn *t)
{
	/* the last entry of the list takes the removed one's place */
	if (turn_list != NULL && t->index >= 0 && t->index < turn_list_n &&
		turn_list[t->index] == t)
	{
		DispatchTurn *last = turn_list[--turn_list_n];

		turn_list[t->index] = last;
		last->index = t->index;
	}
	hash_search(turn_table, t->session_id, HASH_REMOVE, NULL);
	pg_atomic_fetch_sub_u32(&dispatch_shared->turns_tracked, 1);
}

/*
 * Empty the table: a dispatcher starting afresh has no call in flight,
 * whatever an earlier life of it left in shared memory.
 */
void
turns_reset(void)
{
	HASH_SEQ_STATUS status;
	DispatchTurn *t;

	turns_lock();
	hash_seq_init(&status, turn_table);
	while ((t = hash_seq_search(&status)) != NULL)
	{
		hash_search(turn_table, t->session_id, HASH_REMOVE, NULL);
		pg_atomic_fetch_sub_u32(&dispatch_shared->turns_tracked, 1);
	}
	turns_unlock();
	turn_list_n = 0;
}

/*
 * Record why the last attempt failed, for the view.
 */
void
turns_set_error(DispatchTurn *t, int status, const char *error)
{
	turns_lock();
	t->last_status = status;
	strlcpy(t->last_error, error ? error : "", sizeof(t->last_error));
	turns_unlock();
}

long
turns_count(void)
{
	return turn_list_n;
}

/*
 * The table's entries, for the dispatcher's scans: turns_at(0) ..
 * turns_at(turns_count() - 1).  Removing an entry moves the last one into
 * its place, so a scan that removes walks downwards.
 */
DispatchTurn *
turns_at(int i)
{
	return turn_list[i];
}

/*
 * A session's user and agent: from its shared entry if it is cached there
 * (it is, for records this recent), else from fleetlm.sessions.  False if
 * the session is gone.
 */
static bool
turns_session_parties(const char *session_id, char *user_id, char *agent_id)
{
	uint32		hashcode = session_hash_code(session_id);
	LWLock	   *plock = session_partition_lock(hashcode);
	FleetSession *entry;
	FleetSessionInfo info;

	LWLockAcquire(plock, LW_SHARED);
	entry = session_find(session_id, hashcode);
	if (entry != NULL)
	{
		strlcpy(user_id, entry->user_id, FLEETLM_ID_MAXLEN + 1);
		strlcpy(agent_id, entry->agent_id, FLEETLM_ID_MAXLEN + 1);
		LWLockRelease(plock);
		return true;
	}
	LWLockRelease(plock);
	if (!session_load_info(session_id, &info, false))
		return false;
	strlcpy(user_id, info.user_id, FLEETLM_ID_MAXLEN + 1);
	strlcpy(agent_id, info.agent_id, FLEETLM_ID_MAXLEN + 1);
	return true;
}

/*
 * Fold one durable record into the table.  Runs in a transaction (a
 * session's parties may need a query).
 */
static void
turns_apply_record(FleetRecord *rec)
{
	FleetRecordHeader *h = rec->hdr;
	char		session_id[FLEETLM_ID_MAXLEN + 1];
	char		sender[FLEETLM_ID_MAXLEN + 1];
	char		recipient[FLEETLM_ID_MAXLEN + 1];
	DispatchTurn *t;
	int64		key_turn;

	memcpy(session_id, rec->session_id, Min(h->session_len, FLEETLM_ID_MAXLEN));
	session_id[Min(h->session_len, FLEETLM_ID_MAXLEN)] = '\0';
	t = turns_find(session_id);

	if (h->type == FLEET_REC_DELETE_SESSION)
	{
		history_forget(session_id);
		if (t != NULL)
			dispatch_session_deleted(t);
		return;
	}
	if (h->type != FLEET_REC_APPEND)
		return;

	memcpy(sender, rec->sender_id, Min(h->sender_len, FLEETLM_ID_MAXLEN));
	sender[Min(h->sender_len, FLEETLM_ID_MAXLEN)] = '\0';

	/* the history cache of a session we call an agent for */
	if (history_wanted(session_id))
	{
		StringInfoData frag;
		char	   *kind = pnstrdup(rec->kind, h->kind_len);

		initStringInfo(&frag);
		history_render(&frag, h->seq, sender, kind, rec->content,
					   rec->metadata, h->created_at);
		history_add(session_id, h->seq, frag.data, frag.len);
		pfree(frag.data);
		pfree(kind);
	}

	/* an answer: the reply or agent_error of turn T, from the agent */
	key_turn = h->key_len > 0 ? record_key_turn(rec->key, h->key_len) : 0;
	if (key_turn > 0)
	{
		stream_resolved(session_id, key_turn);
		if (t != NULL && strcmp(sender, t->agent_id) == 0)
		{
			bool		failed = (h->kind_len == 11 &&
								  memcmp(rec->kind, "agent_error", 11) == 0);

			dispatch_turn_resolved(t, key_turn, failed);
		}
		return;
	}

	/* a user's message carries its session's agent as recipient */
	if (h->recipient_len == 0 || h->recipient_len > FLEETLM_ID_MAXLEN)
		return;
	memcpy(recipient, rec->recipient_id, h->recipient_len);
	recipient[h->recipient_len] = '\0';
	if (t != NULL)
	{
		if (strcmp(recipient, t->agent_id) != 0 || strcmp(sender, t->user_id) != 0)
			return;
	}
	else
	{
		char		user_id[FLEETLM_ID_MAXLEN + 1];
		char		agent_id[FLEETLM_ID_MAXLEN + 1];

		if (!dispatch_agent_active(recipient))
			return;
		if (!turns_session_parties(session_id, user_id, agent_id))
			return;
		if (strcmp(recipient, agent_id) != 0 || strcmp(sender, user_id) != 0)
			return;
		turns_lock();
		t = turns_enter(session_id, user_id, agent_id);
		turns_unlock();
		if (t == NULL)
		{
			static TimestampTz warned_at = 0;
			TimestampTz now = GetCurrentTimestamp();

			/* the turn is in pending_turns: the next resync finds it */
			turns_overflowed = true;
			if (TimestampDifferenceExceeds(warned_at, now, 10000))
			{
				warned_at = now;
				ereport(WARNING,
						(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
						 errmsg("fleetlm dispatcher tracks %d sessions with unanswered turns already; session \"%s\" waits",
								fleetlm_dispatch_max_turns, session_id),
						 errhint("Raise fleetlm.dispatch_max_turns.  The turn is not lost: it runs once others are answered.")));
			}
			return;
		}
	}
	if (h->seq > t->user_seq)
	{
		TimestampTz now = GetCurrentTimestamp();
		int			debounce = dispatch_agent_debounce_ms(t->agent_id);

		turns_lock();
		if (t->state == TURN_WAITING && t->user_seq <= t->resolved)
			t->first_at = now;	/* the first unanswered message */
		t->user_seq = h->seq;
		t->last_at = now;
		if (t->state == TURN_WAITING)
		{
			/* trailing edge, but never later than 10 quiet periods */
			t->due_at = Min(TimestampTzPlusMilliseconds(now, debounce),
							TimestampTzPlusMilliseconds(t->first_at, debounce * 10));
		}
		turns_unlock();
	}
}

/*
 * Read durable records from *cursor on (at most max_records) and fold them
 * into the table.  Returns false if the records at the cursor have left the
 * ring (the applier overtook us): the caller resyncs.
 */
bool
turns_tail(uint64 *cursor, int max_records)
{
	uint64		durable = fleet_read_pos(&fleet_shared->durable);
	uint64		from = *cursor;
	uint64		len;
	char	   *buf;
	uint64		pos;
	int			n = 0;

	if (from >= durable)
		return true;
	len = Min(durable - from, TURNS_TAIL_CHUNK);

	/* copy whole records, at least one, while the ring holds still */
	LWLockAcquire(fleet_shared->reclaim_lock, LW_SHARED);
	if (from < fleet_read_pos(&fleet_shared->applied))
	{
		LWLockRelease(fleet_shared->reclaim_lock);
		return false;
	}
	{
		FleetRecordHeader hdr;
		uint64		end = from;

		while (end < durable && n < max_records)
		{
			uint64		rlen;

			ring_read_header(end, &hdr);
			rlen = FLEET_REC_ALIGN(hdr.total_len);
			if (end > from && end + rlen - from > len)
				break;
			end += rlen;
			n++;
		}
		len = end - from;
	}
	buf = palloc(len);
	ring_read(from, buf, len);
	LWLockRelease(fleet_shared->reclaim_lock);

	pos = 0;
	while (pos < len)
	{
		FleetRecord rec;
		FleetRecordHeader *hdr = (FleetRecordHeader *) (buf + pos);
		Size		rlen = FLEET_REC_ALIGN(hdr->total_len);

		record_decode(buf + pos, &rec);
		turns_apply_record(&rec);
		pos += rlen;
	}
	pfree(buf);
	*cursor = from + len;
	return true;
}

/*
 * Rebuild the table from fleetlm.pending_turns and put the cursor at the
 * applier's position of the same snapshot.  Entries with a call in flight
 * stay (their answer is keyed, so it cannot land twice); the others are
 * dropped and come back from the table or from the tail of the log.
 * Returns false if the records from that position have already left the
 * ring: try again later.  Runs in a transaction, SPI connected.
 */
bool
turns_resync(uint64 *cursor)
{
	static SPIPlanPtr plan = NULL;
	DispatchTurn *t;
	uint64		applied_lsn;
	uint64		processed;
	bool		overflow = false;

	plan = fleet_spi_plan(&plan,
						  "SELECT w.applied_lsn, p.session_id, s.user_id, s.agent_id, p.last_user_seq"
						  "  FROM fleetlm.wal_state w"
						  "  LEFT JOIN (fleetlm.pending_turns p"
						  "             JOIN fleetlm.sessions s USING (session_id)) ON true",
						  0, NULL);
	if (SPI_execute_plan(plan, NULL, NULL, true, 0) != SPI_OK_SELECT || SPI_processed < 1)
		elog(ERROR, "fleetlm dispatcher: could not read fleetlm.pending_turns");

	{
		bool		isnull;

		applied_lsn = (uint64) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
														   SPI_tuptable->tupdesc,
														   1, &isnull));
	}
	if (applied_lsn < fleet_read_pos(&fleet_shared->applied) &&
		pg_atomic_read_u32(&fleet_shared->state) == FLEET_STATE_READY)
	{
		/* the applier moved on since our snapshot: records may be gone */
		uint64		applied_now = fleet_read_pos(&fleet_shared->applied);

		if (applied_now > applied_lsn)
		{
			LWLockAcquire(fleet_shared->reclaim_lock, LW_SHARED);
			applied_now = fleet_read_pos(&fleet_shared->applied);
			LWLockRelease(fleet_shared->reclaim_lock);
			if (applied_now > applied_lsn)
				return false;
		}
	}

	turns_lock();
	for (int i = turn_list_n - 1; i >= 0; i--)
	{
		t = turn_list[i];
		if (t->state != TURN_RUNNING)
			turns_remove(t);
	}
	turns_unlock();

	processed = SPI_processed;
	for (uint64 i = 0; i < processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		char	   *session_id;
		char	   *user_id;
		char	   *agent_id;
		int64		user_seq;

		(void) SPI_getbinval(tup, desc, 2, &isnull);
		if (isnull)
			continue;
		session_id = SPI_getvalue(tup, desc, 2);
		user_id = SPI_getvalue(tup, desc, 3);
		agent_id = SPI_getvalue(tup, desc, 4);
		user_seq = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));
		turns_lock();
		t = turns_enter(session_id, user_id, agent_id);
		if (t != NULL && user_seq > t->user_seq)
			t->user_seq = user_seq;
		turns_unlock();
		if (t == NULL)
		{
			overflow = true;
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("fleetlm dispatcher: more than %d sessions have unanswered turns; the rest wait",
							fleetlm_dispatch_max_turns),
					 errhint("Raise fleetlm.dispatch_max_turns.")));
			break;
		}
	}
	*cursor = applied_lsn < FLEET_FIRST_LSN ? FLEET_FIRST_LSN : applied_lsn;
	turns_overflowed = overflow;
	return true;
}

static const char *
turns_state_name(DispatchTurnState state)
{
	switch (state)
	{
		case TURN_WAITING:
			return "waiting";
		case TURN_RUNNING:
			return "running";
		case TURN_RETRY:
			return "retry";
		case TURN_APPENDING:
			return "appending";
	}
	return "unknown";
}

/*
 * fleetlm.agent_turns(): the dispatcher's turns, one row per session with
 * a turn unanswered.  A turn not started yet shows turn NULL; user_seq is
 * the message it will answer up to.
 */
Datum
fleetlm_agent_turns(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HASH_SEQ_STATUS status;
	DispatchTurn *t;
	int			n = 0;
	int			cap;
	DispatchTurn *copy;

	fleetlm_require_shmem();
	InitMaterializedSRF(fcinfo, 0);

	LWLockAcquire(dispatch_shared->turn_lock, LW_SHARED);
	cap = (int) hash_get_num_entries(turn_table);
	copy = palloc(sizeof(DispatchTurn) * Max(cap, 1));
	hash_seq_init(&status, turn_table);
	while ((t = hash_seq_search(&status)) != NULL)
	{
		if (n < cap)
			copy[n++] = *t;
	}
	LWLockRelease(dispatch_shared->turn_lock);

	for (int i = 0; i < n; i++)
	{
		Datum		values[9];
		bool		nulls[9];

		t = &copy[i];
		memset(nulls, 0, sizeof(nulls));
		values[0] = CStringGetTextDatum(t->session_id);
		values[1] = CStringGetTextDatum(t->agent_id);
		if (t->turn > 0 && t->state != TURN_WAITING)
			values[2] = Int64GetDatum(t->turn);
		else
			nulls[2] = true;
		values[3] = Int64GetDatum(t->user_seq);
		values[4] = Int32GetDatum(t->state == TURN_WAITING ? 0 : t->attempt);
		values[5] = CStringGetTextDatum(turns_state_name(t->state));
		if (t->state == TURN_WAITING || t->state == TURN_RETRY)
			values[6] = TimestampTzGetDatum(t->due_at);
		else
			nulls[6] = true;
		if (t->last_status != 0)
			values[7] = Int32GetDatum(t->last_status);
		else
			nulls[7] = true;
		if (t->last_error[0] != '\0')
			values[8] = CStringGetTextDatum(t->last_error);
		else
			nulls[8] = true;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*-------------------------------------------------------------------------
 *
 * pending.c
 *	  fleetlm.pending_turns: the sessions whose user waits for an answer,
 *	  kept by the applier in the same transaction as the rows it applies.
 *
 * While a batch is applied, pending_note remembers, per session, the
 * newest message sent to the session's agent (a user's message carries the
 * agent as its recipient) and the newest answer (idempotency key
 * 'turn:<T>').  pending_flush then writes both with two statements: the
 * user messages of sessions whose agent is registered and enabled upsert
 * last_user_seq; answers from the session's agent delete the row when
 * they answer up to last_user_seq.  Together with the records not applied
 * yet, the table is how the dispatcher finds its turns after a restart
 * (dispatch_turns.c).  Memory lives in the applier's batch context.
 *
 * src/pending.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"

#include "fleetlm.h"
#include "pending.h"
#include "spi_util.h"

/* session id, NUL, the other party's id, NUL */
#define PENDING_KEYLEN	(2 * (FLEETLM_ID_MAXLEN + 1))

typedef struct PendingEntry
{
	char		key[PENDING_KEYLEN];
	int64		seq;			/* newest user seq, or newest answered turn */
} PendingEntry;

static HTAB *pending_users = NULL;	/* (session, recipient) -> seq */
static HTAB *pending_answers = NULL;	/* (session, sender) -> turn */

static HTAB *pending_table(const char *name);
static void pending_max(HTAB **table, const char *name, const char *session_id,
						int slen, const char *other, int olen, int64 seq);
static void pending_arrays(HTAB *table, Datum *sessions, Datum *others,
						   Datum *seqs);

static HTAB *
pending_table(const char *name)
{
	HASHCTL		ctl;

	ctl.keysize = PENDING_KEYLEN;
	ctl.entrysize = sizeof(PendingEntry);
	ctl.hcxt = CurrentMemoryContext;
	return hash_create(name, 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/*
 * Forget the last batch (its memory went with the batch context).
 */
void
pending_begin(void)
{
	pending_users = NULL;
	pending_answers = NULL;
}

static void
pending_max(HTAB **table, const char *name, const char *session_id, int slen,
			const char *other, int olen, int64 seq)
{
	char		key[PENDING_KEYLEN];
	PendingEntry *e;
	bool		found;

	if (slen > FLEETLM_ID_MAXLEN || olen > FLEETLM_ID_MAXLEN)
		return;
	memset(key, 0, sizeof(key));
	memcpy(key, session_id, slen);
	memcpy(key + FLEETLM_ID_MAXLEN + 1, other, olen);
	if (*table == NULL)
		*table = pending_table(name);
	e = hash_search(*table, key, HASH_ENTER, &found);
	if (!found || seq > e->seq)
		e->seq = seq;
}

/*
 * Note one applied record.
 */
void
pending_note(FleetRecord *rec)
{
	FleetRecordHeader *h = rec->hdr;
	int64		turn = h->key_len > 0 ? record_key_turn(rec->key, h->key_len) : 0;

	if (turn > 0)
	{
		pending_max(&pending_answers, "fleetlm pending answers",
					rec->session_id, h->session_len,
					rec->sender_id, h->sender_len, turn);
		return;
	}
	if (h->recipient_len > 0)
		pending_max(&pending_users, "fleetlm pending users",
					rec->session_id, h->session_len,
					rec->recipient_id, h->recipient_len, h->seq);
}

/*
 * The entries of a table as three arrays: session ids, other parties,
 * seqs.
 */
static void
pending_arrays(HTAB *table, Datum *sessions, Datum *others, Datum *seqs)
{
	long		n = hash_get_num_entries(table);
	Datum	   *s = palloc(sizeof(Datum) * n);
	Datum	   *o = palloc(sizeof(Datum) * n);
	Datum	   *q = palloc(sizeof(Datum) * n);
	HASH_SEQ_STATUS status;
	PendingEntry *e;
	int			i = 0;

	hash_seq_init(&status, table);
	while ((e = hash_seq_search(&status)) != NULL)
	{
		s[i] = CStringGetTextDatum(e->key);
		o[i] = CStringGetTextDatum(e->key + FLEETLM_ID_MAXLEN + 1);
		q[i] = Int64GetDatum(e->seq);
		i++;
	}
	*sessions = PointerGetDatum(construct_array(s, i, TEXTOID, -1, false, TYPALIGN_INT));
	*others = PointerGetDatum(construct_array(o, i, TEXTOID, -1, false, TYPALIGN_INT));
	*seqs = PointerGetDatum(construct_array(q, i, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * Write what the batch so far changed.  Called before a session deletion
 * is applied and at the end of the batch.
 */
void
pending_flush(void)
{
	static SPIPlanPtr upsert_plan = NULL;
	static SPIPlanPtr delete_plan = NULL;
	Oid			types[3] = {TEXTARRAYOID, TEXTARRAYOID, INT8ARRAYOID};
	Datum		args[3];

	if (pending_users != NULL && hash_get_num_entries(pending_users) > 0)
	{
		upsert_plan = fleet_spi_plan(&upsert_plan,
									 "INSERT INTO fleetlm.pending_turns AS p (session_id, last_user_seq)"
									 " SELECT u.sid, u.seq"
									 "   FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2),"
									 "                   pg_catalog.unnest($3)) AS u(sid, rcpt, seq)"
									 "   JOIN fleetlm.sessions s ON s.session_id OPERATOR(pg_catalog.=) u.sid"
									 "                          AND s.agent_id OPERATOR(pg_catalog.=) u.rcpt"
									 "   JOIN fleetlm.agents a ON a.agent_id OPERATOR(pg_catalog.=) s.agent_id"
									 "                        AND a.status OPERATOR(pg_catalog.=) 'enabled'"
									 " ON CONFLICT (session_id) DO UPDATE"
									 "   SET last_user_seq = pg_catalog.int8larger(p.last_user_seq,"
									 "                                             excluded.last_user_seq)",
									 3, types);
		pending_arrays(pending_users, &args[0], &args[1], &args[2]);
		if (SPI_execute_plan(upsert_plan, args, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "fleetlm applier: could not update fleetlm.pending_turns");
		hash_destroy(pending_users);
		pending_users = NULL;
	}
	if (pending_answers != NULL && hash_get_num_entries(pending_answers) > 0)
	{
		delete_plan = fleet_spi_plan(&delete_plan,
									 "DELETE FROM fleetlm.pending_turns p"
									 " USING ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2),"
									 "                  pg_catalog.unnest($3)) AS r(sid, sender, turn),"
									 "       fleetlm.sessions s"
									 " WHERE p.session_id OPERATOR(pg_catalog.=) r.sid"
									 "   AND s.session_id OPERATOR(pg_catalog.=) r.sid"
									 "   AND s.agent_id OPERATOR(pg_catalog.=) r.sender"
									 "   AND p.last_user_seq OPERATOR(pg_catalog.<=) r.turn",
									 3, types);
		pending_arrays(pending_answers, &args[0], &args[1], &args[2]);
		if (SPI_execute_plan(delete_plan, args, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "fleetlm applier: could not update fleetlm.pending_turns");
		hash_destroy(pending_answers);
		pending_answers = NULL;
	}
}

/*-------------------------------------------------------------------------
 *
 * dispatch_history.c
 *	  The dispatcher's cache of recent messages, rendered as the JSON the
 *	  fleetlm protocol's request body carries.
 *
 * A turn's request carries the last history_limit messages up to T.
 * Reading them from the table (read_messages) and rendering them as JSON
 * for every turn cost the dispatcher most of its time.  But it sees every
 * durable record anyway, in order, as it reads the log's tail: so it
 * keeps, per session it has called an agent for, the rendered messages
 * of a contiguous run of seqs (at most the agent's history_limit), filled
 * by the first read and extended by the tail.  A turn whose range is in
 * the cache is built from it; any other reads the table as before (and
 * refills the cache).
 *
 * The cache is private to the dispatcher and only ever a copy: a gap in
 * the seqs it sees, a deletion, or a reset (more than HISTORY_MAX_BYTES)
 * drops entries, never correctness.  Messages are immutable once
 * durable, so a rendered message never goes stale.
 *
 * src/dispatch_history.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/datetime.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/memutils.h"

#include "dispatch_history.h"
#include "fleetlm.h"

/* All the rendered messages together stay below this; beyond, reset */
#define HISTORY_MAX_BYTES	(64 * 1024 * 1024)

typedef struct HistoryEntry
{
	char		session_id[FLEETLM_ID_MAXLEN + 1];	/* hash key */
	int64		first;			/* seq of the oldest message kept */
	int			n;				/* messages kept: seqs first .. first+n-1 */
	int			cap;			/* most messages kept */
	int			head;			/* index of `first` in frags */
	char	  **frags;			/* ring of rendered messages */
	int		   *lens;
} HistoryEntry;

static MemoryContext history_context = NULL;
static HTAB *history_table = NULL;
static Size history_bytes = 0;

static void history_reset(void);
static void history_drop(HistoryEntry *e);
static void history_push(HistoryEntry *e, const char *frag, int len);

static void
history_reset(void)
{
	HASHCTL		ctl;

	if (history_context != NULL)
		MemoryContextDelete(history_context);
	history_context = AllocSetContextCreate(TopMemoryContext,
											"fleetlm dispatcher history",
											ALLOCSET_DEFAULT_SIZES);
	ctl.keysize = FLEETLM_ID_MAXLEN + 1;
	ctl.entrysize = sizeof(HistoryEntry);
	ctl.hcxt = history_context;
	history_table = hash_create("fleetlm history", 256, &ctl,
								HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	history_bytes = 0;
}

static void
history_drop(HistoryEntry *e)
{
	for (int i = 0; i < e->n; i++)
	{
		int			k = (e->head + i) % e->cap;

		history_bytes -= e->lens[k];
		pfree(e->frags[k]);
	}
	pfree(e->frags);
	pfree(e->lens);
	hash_search(history_table, e->session_id, HASH_REMOVE, NULL);
}

/*
 * Keep one more message (the next seq), dropping the oldest if full.
 */
static void
history_push(HistoryEntry *e, const char *frag, int len)
{
	int			k;

	if (e->n == e->cap)
	{
		history_bytes -= e->lens[e->head];
		pfree(e->frags[e->head]);
		e->head = (e->head + 1) % e->cap;
		e->first++;
		e->n--;
	}
	k = (e->head + e->n) % e->cap;
	e->frags[k] = MemoryContextAlloc(history_context, len + 1);
	memcpy(e->frags[k], frag, len + 1);
	e->lens[k] = len;
	e->n++;
	history_bytes += len;
}

/*
 * Render one message as an element of the fleetlm request's "messages".
 * The one rendering both the cache and the table read use.
 */
void
history_render(StringInfo out, int64 seq, const char *sender, const char *kind,
			   Jsonb *content, Jsonb *metadata, TimestampTz inserted_at)
{
	char		tsbuf[MAXDATELEN + 1];

	appendStringInfo(out, "{\"seq\": " INT64_FORMAT ", \"sender_id\": ", seq);
	escape_json(out, sender);
	appendStringInfoString(out, ", \"kind\": ");
	escape_json(out, kind);
	appendStringInfoString(out, ", \"content\": ");
	(void) JsonbToCString(out, &content->root, VARSIZE(content));
	appendStringInfoString(out, ", \"metadata\": ");
	(void) JsonbToCString(out, &metadata->root, VARSIZE(metadata));
	appendStringInfo(out, ", \"inserted_at\": \"%s\"}",
					 JsonEncodeDateTime(tsbuf, TimestampTzGetDatum(inserted_at),
										TIMESTAMPTZOID, NULL));
}

/*
 * Append the rendered messages first .. last of a session to out, joined
 * by ", ", if the cache holds all of them.
 */
bool
history_build(const char *session_id, int64 first, int64 last, StringInfo out)
{
	HistoryEntry *e;

	if (history_table == NULL || last < first)
		return false;
	e = hash_search(history_table, session_id, HASH_FIND, NULL);
	if (e == NULL || first < e->first || last > e->first + e->n - 1)
		return false;
	for (int64 s = first; s <= last; s++)
	{
		int			k = (e->head + (int) (s - e->first)) % e->cap;

		if (s > first)
			appendStringInfoString(out, ", ");
		appendBinaryStringInfo(out, e->frags[k], e->lens[k]);
	}
	return true;
}

/*
 * Start the cache of a session afresh at seq `first`, keeping at most
 * `cap` messages (the table read that follows fills it).
 */
void
history_begin(const char *session_id, int cap, int64 first)
{
	HistoryEntry *e;
	bool		found;

	if (history_table == NULL || history_bytes > HISTORY_MAX_BYTES)
		history_reset();
	e = hash_search(history_table, session_id, HASH_FIND, NULL);
	if (e != NULL)
		history_drop(e);
	e = hash_search(history_table, session_id, HASH_ENTER, &found);
	e->first = first;
	e->n = 0;
	e->cap = Max(cap, 1);
	e->head = 0;
	e->frags = MemoryContextAllocZero(history_context, sizeof(char *) * e->cap);
	e->lens = MemoryContextAllocZero(history_context, sizeof(int) * e->cap);
}

/*
 * A message of a session, with its seq: from the table read that follows
 * history_begin, or from the log's tail.  Kept if it is the next seq of a
 * cached session; a gap drops the session; older seqs are ignored.
 */
void
history_add(const char *session_id, int64 seq, const char *frag, int len)
{
	HistoryEntry *e;

	if (history_table == NULL)
		return;
	e = hash_search(history_table, session_id, HASH_FIND, NULL);
	if (e == NULL)
		return;
	if (seq < e->first + e->n)
		return;
	if (seq > e->first + e->n)
	{
		history_drop(e);
		return;
	}
	history_push(e, frag, len);
}

/*
 * Is this session cached (so the tail should render its messages)?
 */
bool
history_wanted(const char *session_id)
{
	return history_table != NULL &&
		hash_search(history_table, session_id, HASH_FIND, NULL) != NULL;
}

/*
 * Forget a session (deleted).
 */
void
history_forget(const char *session_id)
{
	HistoryEntry *e;

	if (history_table == NULL)
		return;
	e = hash_search(history_table, session_id, HASH_FIND, NULL);
	if (e != NULL)
		history_drop(e);
}

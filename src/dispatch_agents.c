/*-------------------------------------------------------------------------
 *
 * dispatch_agents.c
 *	  The dispatcher's copy of fleetlm.agents, and how it learns that the
 *	  table changed.
 *
 * register_agent and set_agent_status call dispatch_agents_changed, which
 * registers a transaction callback in the calling backend: at commit it
 * bumps DispatchShared.agents_version and sets the dispatcher's latch, so
 * the dispatcher reloads once the change is visible (a rollback bumps
 * nothing).  The dispatcher also reloads every AGENTS_RELOAD_MS, for rows
 * changed by hand, and on SIGHUP.  The copy lives in the dispatcher's
 * private memory, rebuilt whole at each reload.
 *
 * src/dispatch_agents.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "dispatch.h"
#include "spi_util.h"

static HTAB *agent_table = NULL;
static MemoryContext agent_context = NULL;
static uint64 agents_seen_version = 0;
static TimestampTz agents_loaded_at = 0;
static bool agents_stale = true;
static bool agents_change_pending = false;

static void dispatch_agents_xact_cb(XactEvent event, void *arg);
static int	dispatch_text_array(Datum d, bool isnull, char ***out);

/*
 * Transaction callback of a backend that changed fleetlm.agents: tell the
 * dispatcher once the change is committed (and visible).
 */
static void
dispatch_agents_xact_cb(XactEvent event, void *arg)
{
	if (!agents_change_pending)
		return;
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
	{
		agents_change_pending = false;
		pg_atomic_fetch_add_u64(&dispatch_shared->agents_version, 1);
		dispatch_wake();
	}
	else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
			 event == XACT_EVENT_PREPARE)
		agents_change_pending = false;
}

/*
 * register_agent and set_agent_status call this after their change.
 */
void
dispatch_agents_changed(void)
{
	static bool registered = false;

	if (dispatch_shared == NULL)
		return;
	if (!registered)
	{
		RegisterXactCallback(dispatch_agents_xact_cb, NULL);
		registered = true;
	}
	agents_change_pending = true;
}

/*
 * Must the dispatcher reload its agents (changed, stale, or never read)?
 */
bool
agents_need_reload(TimestampTz now)
{
	return agents_stale ||
		pg_atomic_read_u64(&dispatch_shared->agents_version) != agents_seen_version ||
		TimestampDifferenceExceeds(agents_loaded_at, now, AGENTS_RELOAD_MS);
}

void
agents_mark_stale(void)
{
	agents_stale = true;
}

DispatchAgent *
dispatch_agent(const char *agent_id)
{
	if (agent_table == NULL)
		return NULL;
	return hash_search(agent_table, agent_id, HASH_FIND, NULL);
}

/*
 * For the turn table: is this agent registered and enabled?
 */
bool
dispatch_agent_active(const char *agent_id)
{
	DispatchAgent *a = dispatch_agent(agent_id);

	return a != NULL && a->enabled;
}

int
dispatch_agent_debounce_ms(const char *agent_id)
{
	DispatchAgent *a = dispatch_agent(agent_id);

	return a ? a->debounce_ms : 0;
}

/*
 * Deconstruct a text[] datum into C strings in agent_context.
 */
static int
dispatch_text_array(Datum d, bool isnull, char ***out)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	*out = NULL;
	if (isnull)
		return 0;
	deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &n);
	*out = MemoryContextAlloc(agent_context, sizeof(char *) * Max(n, 1));
	for (int i = 0; i < n; i++)
		(*out)[i] = MemoryContextStrdup(agent_context,
										nulls[i] ? "" : TextDatumGetCString(elems[i]));
	return n;
}

/*
 * Read fleetlm.agents afresh.  Runs in a round's transaction.
 */
void
agents_reload(void)
{
	static SPIPlanPtr plan = NULL;
	HASHCTL		ctl;

	agents_seen_version = pg_atomic_read_u64(&dispatch_shared->agents_version);
	plan = fleet_spi_plan(&plan,
						  "SELECT agent_id, origin_url || webhook_path, protocol, history_mode,"
						  "       history_limit, timeout_ms, debounce_ms, max_concurrency,"
						  "       max_attempts, model, status = 'enabled',"
						  "       ARRAY(SELECT h.key || ': ' || h.value"
						  "               FROM jsonb_each_text(headers) h ORDER BY h.key),"
						  "       ARRAY(SELECT h.key FROM jsonb_each_text(secret_headers) h ORDER BY h.key),"
						  "       ARRAY(SELECT h.value FROM jsonb_each_text(secret_headers) h ORDER BY h.key)"
						  "  FROM fleetlm.agents",
						  0, NULL);
	if (SPI_execute_plan(plan, NULL, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "fleetlm dispatcher: could not read fleetlm.agents");

	if (agent_context != NULL)
		MemoryContextDelete(agent_context);
	agent_context = AllocSetContextCreate(TopMemoryContext, "fleetlm agents",
										  ALLOCSET_DEFAULT_SIZES);
	ctl.keysize = FLEETLM_ID_MAXLEN + 1;
	ctl.entrysize = sizeof(DispatchAgent);
	ctl.hcxt = agent_context;
	agent_table = hash_create("fleetlm agents", 64, &ctl,
							  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *agent_id = SPI_getvalue(tup, desc, 1);
		DispatchAgent *a;
		char	   *error = NULL;
		char	   *s;
		bool		isnull;
		Datum		d;

		if (agent_id == NULL || strlen(agent_id) > FLEETLM_ID_MAXLEN)
			continue;
		a = hash_search(agent_table, agent_id, HASH_ENTER, NULL);
		a->url = MemoryContextStrdup(agent_context, SPI_getvalue(tup, desc, 2));
		a->enabled = DatumGetBool(SPI_getbinval(tup, desc, 11, &isnull));
		{
			MemoryContext old = MemoryContextSwitchTo(agent_context);

			if (!agent_url_parse(a->url, &a->parsed, &error))
			{
				ereport(WARNING,
						(errmsg("fleetlm dispatcher: agent \"%s\" has an invalid URL: %s; it gets no turns",
								agent_id, error)));
				a->enabled = false;
			}
			MemoryContextSwitchTo(old);
		}
		a->host_is_name = a->parsed.host != NULL && a->parsed.host[0] != '[' &&
			strspn(a->parsed.host, "0123456789.") != strlen(a->parsed.host);
		s = SPI_getvalue(tup, desc, 3);
		a->protocol = agent_stream_protocol(s);
		s = SPI_getvalue(tup, desc, 4);
		a->history_mode = s[0];
		a->history_limit = DatumGetInt32(SPI_getbinval(tup, desc, 5, &isnull));
		a->timeout_ms = DatumGetInt32(SPI_getbinval(tup, desc, 6, &isnull));
		a->debounce_ms = DatumGetInt32(SPI_getbinval(tup, desc, 7, &isnull));
		a->max_concurrency = DatumGetInt32(SPI_getbinval(tup, desc, 8, &isnull));
		a->max_attempts = DatumGetInt32(SPI_getbinval(tup, desc, 9, &isnull));
		s = SPI_getvalue(tup, desc, 10);
		a->model = s ? MemoryContextStrdup(agent_context, s) : NULL;
		d = SPI_getbinval(tup, desc, 12, &isnull);
		a->nheaders = dispatch_text_array(d, isnull, &a->header_lines);
		a->has_accept = false;
		for (int h = 0; h < a->nheaders; h++)
			if (pg_strncasecmp(a->header_lines[h], "accept:", 7) == 0)
				a->has_accept = true;
		d = SPI_getbinval(tup, desc, 13, &isnull);
		a->nsecrets = dispatch_text_array(d, isnull, &a->secret_header);
		d = SPI_getbinval(tup, desc, 14, &isnull);
		(void) dispatch_text_array(d, isnull, &a->secret_name);
		a->running = 0;
	}

	agents_loaded_at = GetCurrentTimestamp();
	agents_stale = false;
}

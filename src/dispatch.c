/*-------------------------------------------------------------------------
 *
 * dispatch.c
 *	  The "fleetlm dispatcher" background worker: calls each session's
 *	  agent when its user has spoken, and appends the streamed reply.
 *
 * One loop, one wait: the latch (new durable records, agents changed,
 * SIGHUP, SIGTERM), postmaster death and the epoll set of the HTTP
 * transfers (dispatch_http.c).  Each round that has work runs one short
 * transaction, never held across a wait or an HTTP exchange, that
 *	1. reloads the agents when they changed (register_agent and
 *	   set_agent_status bump a counter at commit; also every 5 s);
 *	2. reads the new durable records into the turn table (dispatch_turns.c),
 *	   or rebuilds the table from fleetlm.pending_turns when it must;
 *	3. settles the calls that ended: appends the reply, or schedules a
 *	   retry, or appends an agent_error after the last attempt;
 *	4. starts the turns that are due, within fleetlm.dispatch_max_inflight
 *	   and each agent's max_concurrency: reads the turn's history, builds
 *	   the request and hands it to libcurl.
 *
 * A turn T of a session is the user's last durable seq when it starts.
 * Its answer (the reply, or agent_error) is appended asynchronously with
 * idempotency key 'turn:<T>' by the agent; the turn is over when the
 * dispatcher reads that record back from the durable log.  If the append
 * is lost in a crash, the turn is still pending and runs again; if it was
 * durable, the key stops a second one.  Retries: transport errors,
 * timeouts, 408, 425, 429, 5xx and replies that end without finish or
 * abort, after a full-jitter exponential back-off (250 ms doubling, capped
 * by fleetlm.dispatch_retry_max_delay) or the agent's Retry-After.
 *
 * SIGTERM (die) ends the process at the next CHECK_FOR_INTERRUPTS, at the
 * latest when the wait returns; in-flight calls are dropped and run again
 * after the restart.
 *
 * src/dispatch.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "append.h"
#include "dispatch.h"
#include "dispatch_http.h"
#include "record.h"
#include "secrets.h"
#include "shmem.h"
#include "spi_util.h"
#include "stream.h"
#include "walwriter.h"

/* What a transfer is for */
typedef struct DispatchCall
{
	char		session_id[FLEETLM_ID_MAXLEN + 1];
	int64		turn;
	int			attempt;
} DispatchCall;

/* Arguments of the steps the dispatcher runs in a subtransaction */
typedef struct AnswerAppend
{
	DispatchTurn *t;
	FleetRecordInput *in;
	int			n;
	const char *key;
	int64		turn;
	uint64		unflushed;		/* out: left to the session's pollers */
} AnswerAppend;

typedef struct StartCall
{
	DispatchTurn *t;
	DispatchAgent *a;
} StartCall;

/*
 * An answer whose session had long-pollers is flushed by them; if it is
 * not durable after this long, the WAL writer is woken (append.c).
 */
#define DISPATCH_WRITER_GRACE_MS	2

/* Most records read per round, so that calls keep being served */
#define DISPATCH_TAIL_RECORDS	4096


static MemoryContext round_context = NULL;
static DispatchCall *calls = NULL;
static int	running_total = 0;
static uint64 writer_due_end = 0;	/* answers left to long-pollers to flush */
static TimestampTz writer_due_at = 0;	/* ... until then */
static uint64 tail_cursor = 0;
static bool need_resync = true;

static void dispatch_shutdown(int code, Datum arg);
static void dispatch_set_options(void);
static bool dispatch_round(TimestampTz now);
static void dispatch_finish_calls(void);
static void dispatch_start_due(TimestampTz now);
static void dispatch_start(DispatchTurn *t, DispatchAgent *a);
static void dispatch_start_guarded(DispatchTurn *t, DispatchAgent *a);
static void dispatch_start_one(void *arg);
static ErrorData *dispatch_subxact(void (*fn) (void *arg), void *arg);
static void dispatch_answer_append(void *arg);
static void dispatch_recount_running(void);
static void dispatch_answer(DispatchTurn *t, int64 turn, int attempt,
							Jsonb **messages, int nmessages,
							const char *error, int status);
static void dispatch_retry_or_fail(DispatchTurn *t, DispatchAgent *a,
								   const HttpResult *res, bool retryable);
static void dispatch_after_answer(DispatchTurn *t);
static long dispatch_next_due_ms(TimestampTz now);
static bool dispatch_startable(DispatchTurn *t, TimestampTz now);

/*
 * Register the worker; called from _PG_init.
 */
void
dispatch_register(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 1;
	strcpy(worker.bgw_library_name, "fleetlm");
	strcpy(worker.bgw_function_name, "dispatch_main");
	strcpy(worker.bgw_name, "fleetlm dispatcher");
	strcpy(worker.bgw_type, "fleetlm dispatcher");
	RegisterBackgroundWorker(&worker);
}

static void
dispatch_shutdown(int code, Datum arg)
{
	http_shutdown();
	dispatch_shared->latch = NULL;
	dispatch_shared->pid = 0;
	pg_atomic_write_u32(&dispatch_shared->in_flight, 0);
}

/*
 * The dispatcher's own settings, as the applier's: it must not inherit a
 * statement timeout or a search_path from the database's defaults.
 */
static void
dispatch_set_options(void)
{
	SetConfigOption("application_name", "fleetlm dispatcher", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_read_only", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("statement_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("lock_timeout", "10s", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("idle_in_transaction_session_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("search_path", "pg_catalog", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("jit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	/* the same few saved plans, thousands of times a second: plan once */
	SetConfigOption("plan_cache_mode", "force_generic_plan", PGC_SUSET, PGC_S_OVERRIDE);
}

/*
 * After the agents were reloaded: the calls in flight count against their
 * agent again.
 */
static void
dispatch_recount_running(void)
{
	DispatchTurn *t;

	for (int i = 0; i < fleetlm_dispatch_max_inflight; i++)
	{
		DispatchAgent *a;

		if (calls[i].session_id[0] == '\0')
			continue;
		t = turns_find(calls[i].session_id);
		if (t != NULL && (a = dispatch_agent(t->agent_id)) != NULL)
			a->running++;
	}
}

/*
 * The turn table's hook: the log holds the answer to turn `turn`.
 */
void
dispatch_turn_resolved(DispatchTurn *t, int64 turn, bool failed)
{
	if (turn <= t->resolved)
		return;
	turns_lock();
	t->resolved = turn;
	turns_unlock();
	if (t->state == TURN_RUNNING)
	{
		/* answered already (an earlier life of ours): drop this call */
		if (turn >= t->turn)
			http_cancel(t->xfer);
		return;
	}
	if (t->turn == 0 || t->resolved >= t->turn || t->resolved >= t->user_seq)
		dispatch_after_answer(t);
}

/*
 * A turn is answered: go on with a follow-up turn if the user spoke since,
 * else forget the session.
 */
static void
dispatch_after_answer(DispatchTurn *t)
{
	turns_lock();
	if (t->user_seq > t->resolved)
	{
		int			debounce = dispatch_agent_debounce_ms(t->agent_id);

		t->state = TURN_WAITING;
		t->turn = 0;
		t->attempt = 0;
		t->next_chunk = 1;
		t->first_at = t->last_at;
		t->due_at = TimestampTzPlusMilliseconds(t->last_at, debounce);
		t->last_status = 0;
		t->last_error[0] = '\0';
	}
	else
		turns_remove(t);
	turns_unlock();
}

/*
 * The turn table's hook: the session was deleted.
 */
void
dispatch_session_deleted(DispatchTurn *t)
{
	if (t->state == TURN_RUNNING)
	{
		turns_lock();
		t->deleted = true;
		turns_unlock();
		http_cancel(t->xfer);
		return;					/* removed when the call is settled */
	}
	turns_lock();
	turns_remove(t);
	turns_unlock();
}

/*
 * Back-off before attempt `attempt` + 1: full jitter over 250 ms doubling,
 * capped; at least what the agent asked with Retry-After (also capped).
 */
static int
dispatch_backoff_ms(int attempt, int retry_after_ms)
{
	int64		ceiling = 250;
	int			delay;

	for (int i = 1; i < attempt && ceiling < fleetlm_dispatch_retry_max_delay_ms; i++)
		ceiling *= 2;
	ceiling = Min(ceiling, fleetlm_dispatch_retry_max_delay_ms);
	delay = (int) pg_prng_uint64_range(&pg_global_prng_state, 0, (uint64) ceiling);
	if (retry_after_ms > delay)
		delay = Min(retry_after_ms, fleetlm_dispatch_retry_max_delay_ms);
	return delay;
}

/*
 * Run fn(arg) in a subtransaction, so that an error undoes only what fn
 * did, not the round.  Returns NULL, or the error, copied into the
 * caller's memory context, for the caller to report and free.
 */
static ErrorData *
dispatch_subxact(void (*fn) (void *arg), void *arg)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorData  *edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_END_TRY();
	return edata;
}

static void
dispatch_answer_append(void *arg)
{
	AnswerAppend *ap = (AnswerAppend *) arg;
	bool		duplicate;

	/* an answer to turn T comes after the user's message T */
	(void) append_group_async(ap->t->session_id, ap->t->agent_id, ap->in, ap->n,
							  ap->key, ap->turn, &duplicate, &ap->unflushed);
}

/*
 * Append the answer to a turn: the agent's message(s), as one atomic
 * group, or an agent_error.  In a subtransaction, so that one failed
 * append does not undo the round; a failure leaves the turn to run again
 * a second later.
 */
static void
dispatch_answer(DispatchTurn *t, int64 turn, int attempt, Jsonb **messages,
				int nmessages, const char *error, int status)
{
	FleetRecordInput *in;
	StringInfoData buf;
	char		key[32];
	bool		ok = false;
	int			n = messages != NULL ? nmessages : 1;
	Jsonb	   *metadata;
	AnswerAppend ap;
	ErrorData  *edata;

	snprintf(key, sizeof(key), "turn:" INT64_FORMAT, turn);
	in = palloc0(sizeof(FleetRecordInput) * n);
	initStringInfo(&buf);
	if (messages != NULL)
	{
		appendStringInfo(&buf, "{\"turn\": " INT64_FORMAT ", \"attempt\": %d}",
						 turn, attempt);
		metadata = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
		for (int i = 0; i < n; i++)
		{
			in[i].type = FLEET_REC_APPEND;
			in[i].kind = "assistant";
			in[i].content = messages[i];
			in[i].metadata = metadata;
		}
	}
	else
	{
		in->type = FLEET_REC_APPEND;
		in->kind = "agent_error";
		appendStringInfoString(&buf, "{\"error\": ");
		escape_json(&buf, error);
		if (status > 0)
			appendStringInfo(&buf, ", \"status\": %d", status);
		else
			appendStringInfoString(&buf, ", \"status\": null");
		appendStringInfo(&buf, ", \"attempts\": %d}", attempt);
		in->content = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
		resetStringInfo(&buf);
		appendStringInfo(&buf, "{\"turn\": " INT64_FORMAT "}", turn);
		in->metadata = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
	}

	ap.t = t;
	ap.in = in;
	ap.n = n;
	ap.key = key;
	ap.turn = turn;
	ap.unflushed = 0;
	edata = dispatch_subxact(dispatch_answer_append, &ap);
	if (edata == NULL)
	{
		ok = true;
		if (ap.unflushed > writer_due_end)
		{
			writer_due_end = ap.unflushed;
			writer_due_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														DISPATCH_WRITER_GRACE_MS);
		}
	}
	else
	{
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("fleetlm dispatcher could not append the answer to turn " INT64_FORMAT " of session \"%s\": %s",
						turn, t->session_id, edata->message),
				 errdetail("The turn runs again.")));
		FreeErrorData(edata);
	}

	turns_lock();
	if (ok)
		t->state = TURN_APPENDING;
	else
	{
		t->state = TURN_RETRY;
		t->due_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 1000);
	}
	turns_unlock();
	if (ok && messages != NULL)
		pg_atomic_fetch_add_u64(&dispatch_shared->turns_completed, 1);
	else if (ok)
		pg_atomic_fetch_add_u64(&dispatch_shared->turns_failed, 1);
}

/*
 * An attempt failed: schedule the next, or give up with an agent_error.
 */
static void
dispatch_retry_or_fail(DispatchTurn *t, DispatchAgent *a,
					   const HttpResult *res, bool retryable)
{
	int			max_attempts = a ? a->max_attempts : 1;

	turns_set_error(t, res->status, res->error);
	if (retryable && t->attempt < max_attempts)
	{
		int			delay = dispatch_backoff_ms(t->attempt, res->retry_after_ms);

		turns_lock();
		t->state = TURN_RETRY;
		t->due_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), delay);
		turns_unlock();
		pg_atomic_fetch_add_u64(&dispatch_shared->attempts_retried, 1);
		return;
	}
	dispatch_answer(t, t->turn, t->attempt, NULL, 0, res->error, res->status);
}

/*
 * Settle the calls that ended.
 */
static void
dispatch_finish_calls(void)
{
	int			x;

	while ((x = http_next_done()) >= 0)
	{
		DispatchCall *c = &calls[x];
		DispatchTurn *t = turns_find(c->session_id);
		DispatchAgent *a = t ? dispatch_agent(t->agent_id) : NULL;
		HttpResult res;
		char		fallback[FLEETLM_ID_MAXLEN + 48];

		snprintf(fallback, sizeof(fallback), "msg-%s-" INT64_FORMAT, c->session_id, c->turn);
		http_result(x, &res, fallback);
		http_release(x, res.outcome != HTTP_OK);
		c->session_id[0] = '\0';
		running_total--;
		pg_atomic_write_u32(&dispatch_shared->in_flight, running_total);
		pg_atomic_fetch_add_u64(&dispatch_shared->http_usec, res.usec);
		if (a != NULL && a->running > 0)
			a->running--;

		if (t == NULL || t->xfer != x || t->state != TURN_RUNNING)
			continue;
		t->xfer = -1;

		if (res.outcome == HTTP_CANCELLED)
		{
			/* answered meanwhile, or the session is gone */
			turns_lock();
			t->state = TURN_RETRY;
			t->due_at = GetCurrentTimestamp();
			turns_unlock();
			if (t->resolved >= t->turn)
				dispatch_after_answer(t);
			else if (t->deleted)
			{
				turns_lock();
				turns_remove(t);
				turns_unlock();
			}
			continue;
		}
		turns_lock();
		t->next_chunk += res.chunks;
		turns_unlock();
		if (res.outcome == HTTP_OK)
			dispatch_answer(t, t->turn, t->attempt, res.messages, res.nmessages,
							NULL, 0);
		else
			dispatch_retry_or_fail(t, a, &res, res.outcome == HTTP_RETRY);
	}
}

/*
 * May this turn start now?  Due, its agent enabled with room, room overall.
 */
static bool
dispatch_startable(DispatchTurn *t, TimestampTz now)
{
	DispatchAgent *a;

	if ((t->state != TURN_WAITING && t->state != TURN_RETRY) || t->due_at > now)
		return false;
	if (t->state == TURN_WAITING && t->user_seq <= t->resolved)
		return false;
	a = dispatch_agent(t->agent_id);
	if (a == NULL || !a->enabled || a->running >= a->max_concurrency)
		return false;
	return running_total < fleetlm_dispatch_max_inflight;
}

/*
 * Start every turn that is due, as long as there is room.
 */
static void
dispatch_start_due(TimestampTz now)
{
	DispatchTurn *t;
	DispatchTurn **due;
	int			n = 0;
	long		cap = turns_count();

	if (cap == 0 || running_total >= fleetlm_dispatch_max_inflight)
		return;
	/* collect first: starting may change the table under a scan */
	due = palloc(sizeof(DispatchTurn *) * cap);
	for (int i = 0; i < cap; i++)
	{
		t = turns_at(i);
		if (dispatch_startable(t, now))
			due[n++] = t;
	}
	for (int i = 0; i < n; i++)
	{
		if (dispatch_startable(due[i], now))
			dispatch_start_guarded(due[i], dispatch_agent(due[i]->agent_id));
	}
	pfree(due);
}

/*
 * Start a turn in a subtransaction: an error (its session deleted since
 * the tail was read, a failed read) costs that turn a retry a second
 * later, not the round or the worker.
 */
static void
dispatch_start_one(void *arg)
{
	StartCall  *sc = (StartCall *) arg;

	dispatch_start(sc->t, sc->a);
}

static void
dispatch_start_guarded(DispatchTurn *t, DispatchAgent *a)
{
	StartCall	sc;
	ErrorData  *edata;

	sc.t = t;
	sc.a = a;
	edata = dispatch_subxact(dispatch_start_one, &sc);
	if (edata == NULL)
		return;
	ereport(WARNING,
			(errcode(edata->sqlerrcode),
			 errmsg("fleetlm dispatcher could not start a turn of session \"%s\": %s",
					t->session_id, edata->message),
			 errdetail("The turn runs again in a second.")));
	turns_lock();
	t->state = TURN_RETRY;
	t->due_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 1000);
	strlcpy(t->last_error, edata->message, sizeof(t->last_error));
	turns_unlock();
	FreeErrorData(edata);
}

/*
 * Start turn t (a new turn, or the next attempt of the current one).
 * Failures that no retry can mend (URL no longer allowed, secret missing)
 * answer the turn with an agent_error at once.
 */
static void
dispatch_start(DispatchTurn *t, DispatchAgent *a)
{
	bool		new_turn = (t->state == TURN_WAITING);
	int64		turn = new_turn ? t->user_seq : t->turn;
	int			attempt = new_turn ? 1 : t->attempt + 1;
	struct curl_slist *headers = NULL;
	HttpRequest req;
	HttpResult	fail;
	char		error[256];
	bool		retryable;
	int			x;

	turns_lock();
	t->turn = turn;
	t->attempt = attempt;
	if (new_turn)
		t->next_chunk = 1;
	turns_unlock();
	if (new_turn)
		pg_atomic_fetch_add_u64(&dispatch_shared->turns_started, 1);

	memset(&fail, 0, sizeof(fail));
	if (!agent_url_allowed(&a->parsed, fleetlm_agent_url_allowlist))
	{
		snprintf(fail.error, sizeof(fail.error),
				 "the agent's URL is not allowed by fleetlm.agent_url_allowlist");
		dispatch_retry_or_fail(t, a, &fail, false);
		return;
	}

	headers = dispatch_request_headers(t, a, turn, fail.error, sizeof(fail.error),
									   &retryable);
	if (headers == NULL)
	{
		dispatch_retry_or_fail(t, a, &fail, retryable);
		return;
	}

	memset(&req, 0, sizeof(req));
	req.url = a->url;
	req.body = dispatch_request_body(t, a, turn, attempt);
	req.headers = headers;
	req.protocol = a->protocol;
	req.check_address = a->host_is_name;
	req.timeout_ms = a->timeout_ms;
	req.session_id = t->session_id;
	req.turn = turn;
	req.attempt = attempt;
	req.first_chunk = t->next_chunk;
	x = http_start(&req, error, sizeof(error));
	if (x < 0)
	{
		strlcpy(fail.error, error, sizeof(fail.error));
		dispatch_retry_or_fail(t, a, &fail, true);
		return;
	}
	strlcpy(calls[x].session_id, t->session_id, sizeof(calls[x].session_id));
	calls[x].turn = turn;
	calls[x].attempt = attempt;
	running_total++;
	pg_atomic_write_u32(&dispatch_shared->in_flight, running_total);
	a->running++;
	turns_lock();
	t->state = TURN_RUNNING;
	t->xfer = x;
	t->started_at = GetCurrentTimestamp();
	turns_unlock();
}

/*
 * Milliseconds until the next turn becomes due (-1: none); 0 if one is
 * startable now.
 */
static long
dispatch_next_due_ms(TimestampTz now)
{
	DispatchTurn *t;
	TimestampTz next = 0;
	long		n = turns_count();

	for (int i = 0; i < n; i++)
	{
		t = turns_at(i);
		if (t->state != TURN_WAITING && t->state != TURN_RETRY)
			continue;
		if (t->due_at <= now)
		{
			if (dispatch_startable(t, now))
				return 0;
			continue;			/* waits for room: a call's end wakes us */
		}
		if (next == 0 || t->due_at < next)
			next = t->due_at;
	}
	if (next == 0)
		return -1;
	return (long) ((next - now + 999) / 1000);
}

/*
 * One round of work in one transaction.  Returns true if records are left
 * to read (the caller comes back without waiting).
 */
static bool
dispatch_round(TimestampTz now)
{
	bool		more = false;
	FleetSpiContext spi;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	fleet_spi_connect(&spi);
	pgstat_report_activity(STATE_RUNNING, "fleetlm: dispatching");
	MemoryContextSwitchTo(round_context);

	if (agents_need_reload(GetCurrentTimestamp()))
	{
		agents_reload();
		dispatch_recount_running();
	}
	if (need_resync)
		need_resync = !turns_resync(&tail_cursor);
	if (!need_resync)
	{
		if (!turns_tail(&tail_cursor, DISPATCH_TAIL_RECORDS))
			need_resync = true;
		else
			more = tail_cursor < fleet_read_pos(&fleet_shared->durable);
	}
	dispatch_finish_calls();
	dispatch_start_due(GetCurrentTimestamp());

	/*
	 * Sessions that found the table full wait in pending_turns: once half
	 * of it is free, resync to pick them up.
	 */
	if (turns_overflowed && !need_resync &&
		turns_count() < fleetlm_dispatch_max_turns / 2)
		need_resync = true;

	fleet_spi_finish(&spi);
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextReset(round_context);
	return more || need_resync;
}

/*
 * Main loop of the dispatcher.
 */
void
dispatch_main(Datum main_arg)
{
	WaitEventSet *set;
	int			sock_pos;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(fleetlm_database, NULL, 0);
	dispatch_set_options();
	pgstat_report_appname("fleetlm dispatcher");

	round_context = AllocSetContextCreate(TopMemoryContext, "fleetlm dispatcher round",
										  ALLOCSET_DEFAULT_SIZES);
	calls = MemoryContextAllocZero(TopMemoryContext,
								   sizeof(DispatchCall) * fleetlm_dispatch_max_inflight);
	http_init();
	secrets_load();
	stream_close_all();			/* slots an earlier life left open */
	turns_reset();				/* and its turns: resync rebuilds them */
	pg_atomic_write_u32(&dispatch_shared->in_flight, 0);

	dispatch_shared->pid = MyProcPid;
	dispatch_shared->latch = MyLatch;
	before_shmem_exit(dispatch_shutdown, (Datum) 0);

	set = CreateWaitEventSet(TopMemoryContext, 3);
	AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	sock_pos = AddWaitEventToSet(set, WL_SOCKET_READABLE, http_wait_fd(), NULL, NULL);

	for (;;)
	{
		WaitEvent	events[3];
		TimestampTz now;
		long		timeout;
		long		t2;
		bool		sockets = false;
		bool		more = false;
		int			n;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			secrets_load();
			agents_mark_stale();
		}

		now = GetCurrentTimestamp();
		if (pg_atomic_read_u32(&fleet_shared->state) != FLEET_STATE_READY)
		{
			/* recovery first: the log is not readable yet */
			timeout = 100;
		}
		else
		{
			if (need_resync || agents_need_reload(now) ||
				tail_cursor < fleet_read_pos(&fleet_shared->durable) ||
				http_next_done() >= 0 ||
				dispatch_next_due_ms(now) == 0)
				more = dispatch_round(now);

			now = GetCurrentTimestamp();
			if (writer_due_end != 0)
			{
				if (fleet_read_pos(&fleet_shared->durable) >= writer_due_end)
					writer_due_end = 0;
				else if (now >= writer_due_at)
				{
					walwriter_wake();
					writer_due_end = 0;
				}
			}
			timeout = AGENTS_RELOAD_MS;
			t2 = dispatch_next_due_ms(now);
			if (t2 >= 0 && t2 < timeout)
				timeout = t2;
			t2 = http_timeout_ms(now);
			if (t2 >= 0 && t2 < timeout)
				timeout = t2;
			if (writer_due_end != 0)
				timeout = Min(timeout, DISPATCH_WRITER_GRACE_MS);
			if (need_resync)
				timeout = Min(timeout, 100);
			else if (more)
				timeout = 0;
		}

		n = WaitEventSetWait(set, timeout, events, lengthof(events), PG_WAIT_EXTENSION);
		for (int i = 0; i < n; i++)
		{
			if (events[i].events & WL_LATCH_SET)
				ResetLatch(MyLatch);
			if (events[i].pos == sock_pos)
				sockets = true;
		}
		CHECK_FOR_INTERRUPTS();
		http_run(sockets, GetCurrentTimestamp());
	}
}

/*-------------------------------------------------------------------------
 *
 * dispatch.h
 *	  The agent engine's dispatcher: the "fleetlm dispatcher" background
 *	  worker that turns users' messages into HTTP calls to their sessions'
 *	  agents and appends the replies (dispatch.c), the table of turns it
 *	  tracks (dispatch_turns.c) and its HTTP transfers (dispatch_http.c).
 *
 * The turn table is a shared hash, session id -> DispatchTurn, of at most
 * fleetlm.dispatch_max_turns entries: the sessions with a turn unanswered.
 * Only the dispatcher adds, changes and removes entries, holding turn_lock
 * exclusively; fleetlm.agent_turns() reads them holding it shared.  The
 * dispatcher reads its own entries without the lock.
 *
 * src/dispatch.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_DISPATCH_H
#define FLEETLM_DISPATCH_H

#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "agent_stream.h"
#include "agent_url.h"
#include "fleetlm.h"

#define DISPATCH_ERROR_LEN		200

/* Where a session's turn is (DispatchTurn.state) */
typedef enum DispatchTurnState
{
	TURN_WAITING = 0,			/* unanswered; starts at due_at (debounce) */
	TURN_RUNNING,				/* an HTTP call is in flight */
	TURN_RETRY,					/* an attempt failed; the next at due_at */
	TURN_APPENDING				/* reply appended, waiting to see it durable */
} DispatchTurnState;

typedef struct DispatchTurn
{
	char		session_id[FLEETLM_ID_MAXLEN + 1];	/* hash key */
	char		agent_id[FLEETLM_ID_MAXLEN + 1];
	char		user_id[FLEETLM_ID_MAXLEN + 1];
	int64		user_seq;		/* the user's last durable seq (U) */
	int64		resolved;		/* highest turn answered, 0: unknown/none */
	int64		turn;			/* the turn started (T), 0: none yet */
	int			attempt;		/* attempts of `turn` so far */
	int			next_chunk;		/* first chunk number of the next attempt */
	DispatchTurnState state;
	TimestampTz first_at;		/* first unanswered message seen (cap) */
	TimestampTz last_at;		/* last user message seen (debounce) */
	TimestampTz due_at;			/* when WAITING or RETRY may start */
	TimestampTz started_at;		/* start of the current attempt */
	int			last_status;	/* HTTP status of the last failure, 0: none */
	char		last_error[DISPATCH_ERROR_LEN];
	int			xfer;			/* dispatcher-private transfer index, -1 */
	bool		deleted;		/* the session was deleted mid-call */
	int			index;			/* dispatcher-private: place in its list */
} DispatchTurn;

/* Shared state of the dispatcher */
typedef struct DispatchShared
{
	LWLock	   *turn_lock;
	Latch	   *latch;			/* the dispatcher's, NULL when not running */
	int			pid;
	pg_atomic_uint64 agents_version;	/* bumped by register_agent &c. */
	/* counters (fleetlm.stat) */
	pg_atomic_uint64 turns_started;
	pg_atomic_uint64 turns_completed;
	pg_atomic_uint64 turns_failed;
	pg_atomic_uint64 attempts_retried;
	pg_atomic_uint64 http_usec;
	pg_atomic_uint32 in_flight;
	pg_atomic_uint32 turns_tracked;
} DispatchShared;

extern DispatchShared *dispatch_shared;

/* The dispatcher's copy of one agent */
typedef struct DispatchAgent
{
	char		agent_id[FLEETLM_ID_MAXLEN + 1];	/* hash key */
	bool		enabled;
	char	   *url;
	AgentUrl	parsed;
	bool		host_is_name;
	AgentStreamProtocol protocol;
	char		history_mode;	/* 't'ail, 'l'ast, 'e'ntire */
	int			history_limit;
	int			timeout_ms;
	int			debounce_ms;
	int			max_concurrency;
	int			max_attempts;
	int			nheaders;
	char	  **header_lines;	/* "Name: value" */
	bool		has_accept;		/* headers has its own Accept */
	int			nsecrets;
	char	  **secret_header;	/* header names ... */
	char	  **secret_name;	/* ... and the secrets they take */
	char	   *model;
	int			running;		/* calls in flight */
} DispatchAgent;

/* Reload the agents at least this often (hand edits of fleetlm.agents) */
#define AGENTS_RELOAD_MS	5000

/* The agents (dispatch_agents.c) */
extern DispatchAgent *dispatch_agent(const char *agent_id);
extern bool agents_need_reload(TimestampTz now);
extern void agents_mark_stale(void);
extern void agents_reload(void);

/* Requests (dispatch_request.c) */
extern char *dispatch_request_body(DispatchTurn *t, DispatchAgent *a,
								   int64 turn, int attempt);
struct curl_slist;
extern struct curl_slist *dispatch_request_headers(DispatchTurn *t, DispatchAgent *a,
												   int64 turn, char *error,
												   size_t errlen, bool *retryable);

/* The dispatcher's view of an agent (dispatch.c), for the turn table */
extern bool dispatch_agent_active(const char *agent_id);
extern int	dispatch_agent_debounce_ms(const char *agent_id);

/* Turn table (dispatch_turns.c), dispatcher side */
extern DispatchTurn *turns_find(const char *session_id);
extern DispatchTurn *turns_enter(const char *session_id, const char *user_id,
								 const char *agent_id);
extern void turns_remove(DispatchTurn *t);
extern void turns_reset(void);
extern void turns_set_error(DispatchTurn *t, int status, const char *error);
extern long turns_count(void);
extern bool turns_overflowed;
extern DispatchTurn *turns_at(int i);
extern bool turns_resync(uint64 *cursor);
extern bool turns_tail(uint64 *cursor, int max_records);
extern void turns_lock(void);
extern void turns_unlock(void);

/* Hooks of dispatch.c the turn table calls while it reads the log */
extern void dispatch_turn_resolved(DispatchTurn *t, int64 turn, bool failed);
extern void dispatch_session_deleted(DispatchTurn *t);

extern Size dispatch_shmem_size(void);
extern void dispatch_shmem_init(void);
extern void dispatch_request_locks(void);
extern void dispatch_register(void);
extern void dispatch_wake(void);
extern void dispatch_agents_changed(void);

#endif							/* FLEETLM_DISPATCH_H */

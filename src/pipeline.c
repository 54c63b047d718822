/*-------------------------------------------------------------------------
 *
 * pipeline.c
 *	  One durability wait for a pipeline of appends, and the rule that no
 *	  seq escapes before its message is durable.
 *
 * A client that pipelines (libpq pipeline mode, pgbench \startpipeline,
 * most drivers' batch APIs) sends several appends before it reads any
 * result.  The backend runs them one after the other, so waiting for the
 * fsync inside every append would give the pipeline one fsync round per
 * message.  Instead, an append that may leave its wait to later does not
 * wait: it *owes* the wait (pipeline_defer), the WAL writer starts on the
 * record, and the first point where its seq could outlive a crash settles
 * the wait.  An append may defer (pipeline_can_defer) when
 *	- the client's next protocol message is already received and continues
 *	  the pipeline (Parse, Bind, Describe, Execute, Close); or
 *	- nothing is received yet, and the append runs in an Execute message of
 *	  the extended protocol.  There the client cannot be waiting for a
 *	  result it has not asked for with Sync or Flush, so the backend goes on
 *	  to read the next message while the writer flushes: a driver that
 *	  produces queries more slowly than the server runs them (an
 *	  application-level pipeline) pays one wait per Sync, not one per
 *	  append.
 * It waits when output must go out: at Sync (the implicit transaction's
 * commit settles it, interruptibly, before ReadyForQuery; inside an
 * explicit transaction block the flush of ReadyForQuery does), Flush, a
 * full send buffer, an error, and in the simple-query protocol, whose
 * output is flushed at the end of every Query.  Durability is a prefix of the log,
 * so one wait makes all the deferred appends before it durable.
 *
 * Contract: a seq that is not durable reaches nothing that outlives a
 * crash.  Two ways out exist, and both are closed:
 *	- Output to the client.  This module wraps PqCommMethods, through which
 *	  every protocol message and flush goes.  While a wait is owed, every
 *	  message is held back in a private buffer (pipeline_held), in order;
 *	  before the connection is flushed, or when the held bytes grow large,
 *	  the backend waits for durability and then passes them on.  Nothing
 *	  that follows a deferred result can overtake it.
 *	- A commit.  A transaction callback settles the owed wait at pre-commit
 *	  and pre-prepare (pipeline_xact_callback), with an ordinary
 *	  interruptible wait: an INSERT that stored a deferred seq, a NOTIFY
 *	  that carries it, a table written by PL/pgSQL from it, commit only
 *	  once the message is durable.  A cancel there aborts the transaction.
 * What escapes outside a transaction's commit is not covered: a seq sent
 * to another server inside the pipeline (dblink, postgres_fdw with its own
 * commit), or written to a file or program (COPY ... TO, lo_export) before
 * the commit.  Do not pipeline such statements behind appends.
 *
 * Waits and errors.  Functions that read a session, and appends that do
 * not defer, wait for what is owed with an interruptible wait; if it is
 * cancelled, the held-back results are discarded (they may not be sent:
 * not durable) and the error goes out instead, with the same WARNING as a
 * cancelled append (pipeline_abandon).  The wait inside the communication
 * layer must not raise errors (it runs while messages, errors included,
 * are sent): it never services interrupts.  If a cancel or
 * statement_timeout arrives while it waits, the held-back output cannot be
 * delivered and the client would hang without it, so the connection is
 * closed with a FATAL error saying why; on termination (any FATAL error:
 * its ErrorResponse is recognised as it is put), or when the
 * process is exiting or quitting (SIGQUIT, crash of another backend), the
 * held-back output is dropped without any wait or I/O.
 *
 * src/pipeline.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "lib/stringinfo.h"
#include "libpq/libpq.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "tcop/pquery.h"
#include "tcop/tcopprot.h"
#include "utils/portal.h"
#include "utils/memutils.h"

#include "fleetlm.h"
#include "pipeline.h"
#include "shmem.h"
#include "walwriter.h"

/* held-back output that makes the communication layer wait, in bytes */
#define PIPELINE_MAX_HELD	(256 * 1024)

static const PQcommMethods *pipeline_orig = NULL;
static PQcommMethods pipeline_methods;

/* log position our deferred results need durable; 0: none owed */
static uint64 pipeline_owed = 0;

/* protocol messages held back while a wait is owed: type, length, bytes */
static StringInfoData pipeline_held;

/* SIGQUIT arrived: never wait, never send what is held */
static volatile sig_atomic_t pipeline_quitting = false;

static void pipeline_install(void);
static void pipeline_sigquit(SIGNAL_ARGS);
static bool pipeline_is_fatal_error(char msgtype, const char *s, size_t len);
static bool pipeline_in_execute_message(void);
static void pipeline_xact_callback(XactEvent event, void *arg);
static bool pipeline_settle_nothrow(void);
static void pipeline_done(uint64 durable);
static void pipeline_release(void);
static void pipeline_hold(char msgtype, const char *s, size_t len);
static void pipeline_comm_reset(void);
static int	pipeline_flush(void);
static int	pipeline_flush_if_writable(void);
static bool pipeline_is_send_pending(void);
static int	pipeline_putmessage(char msgtype, const char *s, size_t len);
static void pipeline_putmessage_noblock(char msgtype, const char *s, size_t len);

/*
 * Wrap the communication methods, and hook commit and SIGQUIT; once per
 * process, at its first deferred append.
 */
static void
pipeline_install(void)
{
	MemoryContext old;

	if (pipeline_orig != NULL)
		return;
	old = MemoryContextSwitchTo(TopMemoryContext);
	initStringInfo(&pipeline_held);
	MemoryContextSwitchTo(old);

	RegisterXactCallback(pipeline_xact_callback, NULL);
	pqsignal(SIGQUIT, pipeline_sigquit);

	pipeline_orig = PqCommMethods;
	pipeline_methods.comm_reset = pipeline_comm_reset;
	pipeline_methods.flush = pipeline_flush;
	pipeline_methods.flush_if_writable = pipeline_flush_if_writable;
	pipeline_methods.is_send_pending = pipeline_is_send_pending;
	pipeline_methods.putmessage = pipeline_putmessage;
	pipeline_methods.putmessage_noblock = pipeline_putmessage_noblock;
	PqCommMethods = &pipeline_methods;
}

/*
 * SIGQUIT (immediate shutdown, crash of another backend): remember it, so
 * that the quit handler's message to the client neither waits nor carries
 * held-back results, then run the regular backend's handler, quickdie.
 * (It is called by name: pqsignal's return value is no reliable way to
 * chain handlers across PostgreSQL versions.)
 */
static void
pipeline_sigquit(SIGNAL_ARGS)
{
	pipeline_quitting = true;
	quickdie(postgres_signal_arg);
}

/*
 * Is this protocol message the ErrorResponse of a FATAL (or PANIC) error?
 * The process ends right after sending it (termination, for one) without
 * waiting for anything, so the results held back can never be sent: they
 * are dropped, and the error goes out alone.  Its severity is read from
 * the message itself (field 'V', not localized), so this holds whatever
 * the logging settings are.
 */
static bool
pipeline_is_fatal_error(char msgtype, const char *s, size_t len)
{
	size_t		off = 0;

	if (msgtype != 'E')
		return false;
	while (off < len && s[off] != '\0')
	{
		char		field = s[off++];
		const char *value = s + off;
		size_t		vlen = strnlen(value, len - off);

		if (field == 'V')
			return (vlen == 5 && memcmp(value, "FATAL", 5) == 0) ||
				(vlen == 5 && memcmp(value, "PANIC", 5) == 0);
		off += vlen + 1;
	}
	return false;
}

/*
 * Pre-commit and pre-prepare: a transaction that may carry a deferred seq
 * commits only once that seq's message is durable.
 */
static void
pipeline_xact_callback(XactEvent event, void *arg)
{
	if (pipeline_owed == 0)
		return;
	if (event == XACT_EVENT_PRE_COMMIT ||
		event == XACT_EVENT_PARALLEL_PRE_COMMIT ||
		event == XACT_EVENT_PRE_PREPARE)
		pipeline_settle();
}

/*
 * Forget the owed wait and the output held back for it: it will not be
 * sent.  For an error that escapes an interruptible wait.
 */
void
pipeline_abandon(void)
{
	if (pipeline_owed == 0 && (pipeline_orig == NULL || pipeline_held.len == 0))
		return;
	pipeline_owed = 0;
	if (pipeline_orig != NULL)
		resetStringInfo(&pipeline_held);
}

/*
 * Wait, interruptibly, until the log is durable up to `end` and up to what
 * this backend owes; then the held-back output may go.  A cancel or
 * termination abandons the held-back results and raises its error with a
 * WARNING, as synchronous replication does, that the message of seq `seq`
 * of `session_id` (or, without a session, the pipelined messages) was
 * appended and may still become durable.
 */
void
pipeline_wait_durable(uint64 end, const char *session_id, int64 seq)
{
	end = Max(end, pipeline_owed);
	if (fleet_read_pos(&fleet_shared->durable) < end)
	{
		PG_TRY();
		{
			(void) walwriter_flush_for(end, false);
		}
		PG_CATCH();
		{
			pipeline_abandon();
			/* nobody may be flushing for us now: let the writer do it */
			walwriter_wake();
			if (session_id != NULL)
				ereport(WARNING,
						(errcode(ERRCODE_QUERY_CANCELED),
						 errmsg("canceled the wait for durability of message " INT64_FORMAT " of fleetlm session \"%s\"",
								seq, session_id),
						 errdetail("The message was appended and may still become durable.")));
			else
				ereport(WARNING,
						(errcode(ERRCODE_QUERY_CANCELED),
						 errmsg("canceled the wait for durability of pipelined fleetlm appends"),
						 errdetail("Their results were not sent; the messages were appended and may still become durable.")));
			PG_RE_THROW();
		}
		PG_END_TRY();
	}
	pipeline_done(end);
}

/*
 * Settle what this backend owes, if anything (before a read of its own
 * writes, and at pre-commit).
 */
void
pipeline_settle(void)
{
	if (pipeline_owed != 0)
		pipeline_wait_durable(pipeline_owed, NULL, 0);
}

/*
 * The wait of the communication layer: returns true once the owed wait is
 * settled.  Never raises an error and never services interrupts.  If it
 * cannot wait (exiting, quitting, a pending termination) or a cancel
 * arrives, the held-back output is dropped and false is returned; for a
 * cancel the connection is then closed with a FATAL error, since the
 * client would wait forever for the output it can no longer get.
 */
static bool
pipeline_settle_nothrow(void)
{
	if (pipeline_owed == 0)
		return true;
	if (!pipeline_quitting && !proc_exit_inprogress &&
		walwriter_flush_for(pipeline_owed, true))
	{
		pipeline_owed = 0;
		return true;
	}

	pipeline_abandon();
	if (pipeline_quitting || proc_exit_inprogress || ProcDiePending ||
		in_error_recursion_trouble())
		return false;
	QueryCancelPending = false;
	ereport(FATAL,
			(errcode(ERRCODE_QUERY_CANCELED),
			 errmsg("canceling the wait for durability of pipelined fleetlm appends"),
			 errdetail("Their results cannot be sent before the messages are durable, so the connection is closed. The messages were appended and may still become durable.")));
	return false;				/* keep compiler quiet */
}

/*
 * Pass the held-back messages on, in order (nothing is owed any more).
 */
static void
pipeline_release(void)
{
	int			off = 0;

	Assert(pipeline_owed == 0);
	while (off < pipeline_held.len)
	{
		char		msgtype = pipeline_held.data[off];
		uint32		len;

		memcpy(&len, pipeline_held.data + off + 1, sizeof(len));
		if (pipeline_orig->putmessage(msgtype, pipeline_held.data + off + 5, len) != 0)
			break;				/* connection lost: the rest cannot go */
		off += 5 + len;
	}
	resetStringInfo(&pipeline_held);
}

static void
pipeline_hold(char msgtype, const char *s, size_t len)
{
	uint32		len32 = (uint32) len;

	appendStringInfoChar(&pipeline_held, msgtype);
	appendBinaryStringInfo(&pipeline_held, (const char *) &len32, sizeof(len32));
	appendBinaryStringInfo(&pipeline_held, s, (int) len);
}

static void
pipeline_comm_reset(void)
{
	pipeline_orig->comm_reset();
}

static int
pipeline_flush(void)
{
	if (pipeline_owed != 0 && !pipeline_settle_nothrow())
		return EOF;
	if (pipeline_held.len > 0)
		pipeline_release();
	return pipeline_orig->flush();
}

/*
 * Non-blocking flush: with a wait owed there is nothing it may send yet.
 */
static int
pipeline_flush_if_writable(void)
{
	if (pipeline_owed != 0)
		return 0;
	if (pipeline_held.len > 0)
		pipeline_release();
	return pipeline_orig->flush_if_writable();
}

static bool
pipeline_is_send_pending(void)
{
	return pipeline_held.len > 0 || pipeline_orig->is_send_pending();
}

static int
pipeline_putmessage(char msgtype, const char *s, size_t len)
{
	if (pipeline_owed != 0)
	{
		if (pipeline_quitting || proc_exit_inprogress)
		{
			/* say nothing more than what is already safe to say */
			pipeline_abandon();
			return EOF;
		}
		if (pipeline_is_fatal_error(msgtype, s, len))
		{
			pipeline_abandon();
			return pipeline_orig->putmessage(msgtype, s, len);
		}
		pipeline_hold(msgtype, s, len);
		if (pipeline_held.len < PIPELINE_MAX_HELD)
			return 0;
		if (!pipeline_settle_nothrow())
			return EOF;
		pipeline_release();
		return 0;
	}
	/* keep the order: what was held (and is durable now) goes first */
	if (pipeline_held.len > 0)
		pipeline_release();
	return pipeline_orig->putmessage(msgtype, s, len);
}

static void
pipeline_putmessage_noblock(char msgtype, const char *s, size_t len)
{
	if (pipeline_owed != 0 || pipeline_held.len > 0)
	{
		(void) pipeline_putmessage(msgtype, s, len);
		return;
	}
	pipeline_orig->putmessage_noblock(msgtype, s, len);
}

/*
 * Is this backend running an Execute message of the extended protocol,
 * with the append inside the statement of that message?  Then the top
 * portal (ActivePortal) is a SELECT whose rows go to the client through
 * the receiver of Execute, DestRemoteExecute; the simple-query protocol
 * uses DestRemote, and a cursor that SPI or a procedural language fetches
 * from is the active portal with a receiver of its own.  Statements that
 * are not a plain SELECT (INSERT ... RETURNING, a data-modifying WITH) run
 * with no queryDesc in the portal and do not qualify: they defer only when
 * the next message is already here.
 */
static bool
pipeline_in_execute_message(void)
{
	QueryDesc  *qd;

	if (ActivePortal == NULL || ActivePortal->strategy != PORTAL_ONE_SELECT)
		return false;
	qd = ActivePortal->queryDesc;
	return qd != NULL && qd->dest != NULL && qd->dest->mydest == DestRemoteExecute;
}

/*
 * May the append that just ended leave its wait to later?  Only in a
 * regular backend talking to a client over the socket: when the client's
 * next message is already here and continues the pipeline, or when
 * nothing is here yet and the append runs in an Execute message (the
 * client then has to send Sync or Flush before it may expect a result;
 * see the head of this file).
 */
bool
pipeline_can_defer(void)
{
	int			next;

	if (!AmRegularBackendProcess() || whereToSendOutput != DestRemote)
		return false;
	if (pipeline_orig != NULL && PqCommMethods != &pipeline_methods)
		return false;			/* someone else swapped the methods */
	if (pipeline_quitting || proc_exit_inprogress)
		return false;
	if (pq_is_reading_msg())
		return false;
	if (!pq_buffer_has_data())
		return pipeline_in_execute_message();

	/* the buffer holds at least a byte: peeking cannot block */
	pq_startmsgread();
	next = pq_peekbyte();
	pq_endmsgread();

	/* Parse, Bind, Describe, Execute, Close: the pipeline goes on */
	return next == 'P' || next == 'B' || next == 'D' || next == 'E' || next == 'C';
}

/*
 * Owe the durability wait for a record ending at `end` until the next
 * output or commit.
 */
void
pipeline_defer(uint64 end)
{
	pipeline_install();
	/* output held for an earlier, settled wait is safe: send it first */
	if (pipeline_owed == 0 && pipeline_held.len > 0)
		pipeline_release();
	pipeline_owed = Max(pipeline_owed, end);
}

/*
 * Durability up to `durable` was waited for by an interruptible wait;
 * forget what that covers.  The held-back output goes out with the next
 * message or flush.
 */
static void
pipeline_done(uint64 durable)
{
	if (pipeline_owed != 0 && pipeline_owed <= durable)
		pipeline_owed = 0;
}

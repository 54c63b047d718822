/*-------------------------------------------------------------------------
 *
 * pipeline.c
 *	  One durability wait for a pipeline of appends.
 *
 * A client that pipelines (libpq pipeline mode, pgbench \startpipeline,
 * most drivers' batch APIs) sends several appends before it reads any
 * result.  The backend runs them one after the other, so waiting for the
 * fsync inside every append would give the pipeline one fsync round per
 * message.  Instead, when an append finds the client's next protocol
 * message already received and it continues the pipeline (Parse, Bind,
 * Describe, Execute, Close), the append does not wait: it leaves its
 * durability wait to the first point where output could reach the client.
 *
 * The guarantee stays the same: the client never receives the result of
 * an append before its message is durable.  To keep it, this module wraps
 * PqCommMethods, through which every message and every flush of the
 * connection goes:
 *	- when the first append of a run defers, the send buffer is flushed
 *	  (it holds only results that are safe to send), so from then on every
 *	  byte in it is counted;
 *	- before a flush, and before a message that could fill the send buffer
 *	  (and so flush it), the backend waits until the deferred appends are
 *	  durable.
 * The last append of a pipeline, followed by Sync, waits as usual, which
 * makes all the deferred ones durable too (durability is a prefix of the
 * log).  Functions that read a session first wait for this backend's
 * deferred appends, so a pipeline reads its own writes.
 *
 * The wait inside the wrapper cannot raise an error (it runs while
 * messages, errors included, are sent), so it holds interrupts; a backend
 * asked to terminate while waiting drops its output instead of sending
 * results that are not durable.
 *
 * src/pipeline.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "libpq/libpq.h"
#include "miscadmin.h"
#include "tcop/tcopprot.h"

#include "fleetlm.h"
#include "pipeline.h"
#include "shmem.h"
#include "walwriter.h"

/* bytes we let into the send buffer (8 kB at least) while waits are owed */
#define PIPELINE_MAX_BUFFERED	4096

static const PQcommMethods *pipeline_orig = NULL;
static PQcommMethods pipeline_methods;

/* log position our deferred results need durable; 0: none owed */
static uint64 pipeline_owed = 0;

/* bytes put into the send buffer since the owed wait began */
static size_t pipeline_buffered = 0;

static bool pipeline_settle(void);
static void pipeline_comm_reset(void);
static int	pipeline_flush(void);
static int	pipeline_flush_if_writable(void);
static bool pipeline_is_send_pending(void);
static int	pipeline_putmessage(char msgtype, const char *s, size_t len);
static void pipeline_putmessage_noblock(char msgtype, const char *s, size_t len);

/*
 * Wait, without raising errors, until what we owe is durable.  Returns
 * false if the backend is terminating first: its output must then not be
 * sent.
 */
static bool
pipeline_settle(void)
{
	bool		ok = true;

	if (pipeline_owed == 0)
		return true;

	HOLD_INTERRUPTS();
	ok = walwriter_flush_for(pipeline_owed, true);
	RESUME_INTERRUPTS();

	if (ok)
	{
		pipeline_owed = 0;
		pipeline_buffered = 0;
	}
	return ok;
}

static void
pipeline_comm_reset(void)
{
	pipeline_orig->comm_reset();
}

static int
pipeline_flush(void)
{
	if (!pipeline_settle())
		return EOF;
	return pipeline_orig->flush();
}

static int
pipeline_flush_if_writable(void)
{
	if (!pipeline_settle())
		return EOF;
	return pipeline_orig->flush_if_writable();
}

static bool
pipeline_is_send_pending(void)
{
	return pipeline_orig->is_send_pending();
}

static int
pipeline_putmessage(char msgtype, const char *s, size_t len)
{
	if (pipeline_owed != 0)
	{
		/* type byte and length word come with every message */
		if (pipeline_buffered + len + 5 > PIPELINE_MAX_BUFFERED)
		{
			if (!pipeline_settle())
				return EOF;
		}
		else
			pipeline_buffered += len + 5;
	}
	return pipeline_orig->putmessage(msgtype, s, len);
}

static void
pipeline_putmessage_noblock(char msgtype, const char *s, size_t len)
{
	if (!pipeline_settle())
		return;
	pipeline_orig->putmessage_noblock(msgtype, s, len);
}

/*
 * May the append that just ended at `end` leave its wait to later?  Only
 * in a regular backend talking to a client over the socket, when the
 * client's next message is already here and continues the pipeline.
 */
bool
pipeline_can_defer(void)
{
	int			next;

	if (!AmRegularBackendProcess() || whereToSendOutput != DestRemote)
		return false;
	if (pipeline_orig != NULL && PqCommMethods != &pipeline_methods)
		return false;			/* someone else swapped the methods */
	if (pq_is_reading_msg() || !pq_buffer_has_data())
		return false;

	/* the buffer holds at least a byte: peeking cannot block */
	pq_startmsgread();
	next = pq_peekbyte();
	pq_endmsgread();

	/* Parse, Bind, Describe, Execute, Close: the pipeline goes on */
	return next == 'P' || next == 'B' || next == 'D' || next == 'E' || next == 'C';
}

/*
 * Leave the durability wait for a record ending at `end` to the next
 * output that could reach the client.
 */
void
pipeline_defer(uint64 end)
{
	if (pipeline_orig == NULL)
	{
		pipeline_orig = PqCommMethods;
		pipeline_methods.comm_reset = pipeline_comm_reset;
		pipeline_methods.flush = pipeline_flush;
		pipeline_methods.flush_if_writable = pipeline_flush_if_writable;
		pipeline_methods.is_send_pending = pipeline_is_send_pending;
		pipeline_methods.putmessage = pipeline_putmessage;
		pipeline_methods.putmessage_noblock = pipeline_putmessage_noblock;
		PqCommMethods = &pipeline_methods;
	}
	if (pipeline_owed == 0)
	{
		/* send what is buffered now (all safe), then count every byte */
		(void) pipeline_orig->flush();
		pipeline_buffered = 0;
	}
	pipeline_owed = Max(pipeline_owed, end);
}

/*
 * This backend's deferred appends, if any: the log position they need
 * durable (0 if none).  A caller that waits for it calls pipeline_done().
 */
uint64
pipeline_owed_position(void)
{
	return pipeline_owed;
}

/*
 * Durability up to `durable` was waited for by a normal (interruptible)
 * wait; forget what that covers.
 */
void
pipeline_done(uint64 durable)
{
	if (pipeline_owed != 0 && pipeline_owed <= durable)
	{
		pipeline_owed = 0;
		pipeline_buffered = 0;
	}
}

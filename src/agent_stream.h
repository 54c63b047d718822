/*-------------------------------------------------------------------------
 *
 * agent_stream.h
 *	  The agent engine's reply-stream parser and compactor: the bytes of an
 *	  agent's streamed reply in, UI-message-stream chunks and one compacted
 *	  assistant message out.
 *
 * Use from a libcurl transfer (see agent_stream.c for the details):
 *
 *	  create         before the transfer, outside any callback
 *	  feed           in the write callback: copies bytes, never allocates,
 *	                 never raises an error; FULL means "pause and process"
 *	  process        outside callbacks, after each round of the multi
 *	                 handle: turns complete lines into chunks
 *	  finish         once the transfer has ended
 *	  result/message what the reply amounted to
 *	  destroy        frees everything
 *
 * src/agent_stream.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_AGENT_STREAM_H
#define FLEETLM_AGENT_STREAM_H

#include "utils/jsonb.h"

/* What the agent speaks (agents.protocol) */
typedef enum AgentStreamProtocol
{
	AGENT_STREAM_FLEETLM,		/* AI SDK UI-message-stream chunks, JSONL or SSE */
	AGENT_STREAM_OPENAI			/* OpenAI chat-completions streaming */
} AgentStreamProtocol;

/*
 * Where a stream stands.  The failures are sticky: once one is reported,
 * every later call reports it again and reads nothing more.
 */
typedef enum AgentStreamStatus
{
	AGENT_STREAM_OK,			/* more input welcome */
	AGENT_STREAM_FULL,			/* feed only: no room, nothing taken; process,
								 * then feed the same bytes again */
	AGENT_STREAM_ENDED,			/* the reply is over ([DONE], or finish was
								 * called); later bytes are ignored */
	AGENT_STREAM_LINE_TOO_LONG, /* failure: a line over max_line */
	AGENT_STREAM_TOO_LARGE,		/* failure: the reply over max_bytes */
	AGENT_STREAM_MALFORMED		/* failure: not UTF-8, not JSON, not an
								 * object, or chunks that break the protocol */
} AgentStreamStatus;

#define AGENT_STREAM_FAILED(status) ((status) >= AGENT_STREAM_LINE_TOO_LONG)

/* Bounds of the parameters of agent_stream_create */
#define AGENT_STREAM_MAX_LINE_LIMIT		(64 * 1024 * 1024)
#define AGENT_STREAM_MAX_RESERVE		(16 * 1024 * 1024)

/*
 * Called by process and finish with each chunk as it is compacted, in
 * order, numbered from 1: the agent's own chunks for protocol fleetlm, the
 * UI-message-stream chunks translated from it for protocol openai.  The
 * chunk lives until the callback returns; the callback runs in the memory
 * context that was current when process was called and may raise errors.
 */
typedef void (*AgentStreamChunkCallback) (void *arg, int chunk_no, Jsonb *chunk);

/* What a reply amounted to, so far (agent_stream_result) */
typedef struct AgentStreamResult
{
	AgentStreamStatus status;	/* OK while reading, then ENDED or a failure */
	bool		complete;		/* finish or abort seen (openai: a
								 * finish_reason) */
	bool		aborted;		/* abort seen */
	bool		done_marker;	/* data: [DONE] seen */
	bool		truncated;		/* an incomplete last line or event was
								 * dropped at the end */
	const char *error;			/* the failure's message, else the agent's
								 * error text, else NULL */
	const char *agent_error;	/* the agent's first error chunk (or openai
								 * error object) text, or NULL */
	const char *finish_reason;	/* finish's finishReason, or NULL */
	int			chunks;			/* chunks compacted and delivered */
	int64		bytes;			/* bytes taken by feed */
} AgentStreamResult;

typedef struct AgentStream AgentStream;

extern AgentStreamProtocol agent_stream_protocol(const char *name);
extern AgentStream *agent_stream_create(AgentStreamProtocol protocol,
										int max_line, int64 max_bytes,
										int feed_reserve,
										AgentStreamChunkCallback callback,
										void *callback_arg);
extern AgentStreamStatus agent_stream_feed(AgentStream *as, const char *data,
										   size_t len);
extern AgentStreamStatus agent_stream_process(AgentStream *as);
extern AgentStreamStatus agent_stream_finish(AgentStream *as);
extern void agent_stream_result(AgentStream *as, AgentStreamResult *result);
extern Jsonb *agent_stream_message(AgentStream *as, const char *fallback_id);
extern Jsonb **agent_stream_messages(AgentStream *as, const char *fallback_id,
									 int *count);
extern void agent_stream_destroy(AgentStream *as);

#endif							/* FLEETLM_AGENT_STREAM_H */

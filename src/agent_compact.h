/*-------------------------------------------------------------------------
 *
 * agent_compact.h
 *	  Compaction of AI SDK UI-message-stream chunks into one assistant
 *	  message, and their delivery to the stream's chunk callback.
 *
 * src/agent_compact.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_AGENT_COMPACT_H
#define FLEETLM_AGENT_COMPACT_H

#include "nodes/pg_list.h"
#include "utils/jsonb.h"

#include "agent_parts.h"
#include "agent_stream.h"

/*
 * The message being compacted.  The stream (agent_stream.c) counts the
 * JSON objects in nread, sets caller_cxt, and turns failure into its
 * MALFORMED status; the rest belongs to agent_compact.c.
 */
typedef struct AgentCompact
{
	MemoryContext cxt;			/* the stream's: everything kept lives here */
	MemoryContext caller_cxt;	/* current at process: callbacks run in it */
	AgentStreamChunkCallback callback;
	void	   *callback_arg;
	int			nread;			/* JSON objects of the reply read so far;
								 * failure messages name the last one */
	char	   *failure;		/* why the reply breaks its protocol, or NULL */
	const char *cur_type;		/* type of the chunk being compacted */

	/*
	 * Messages completed before the current one: a reply may hold several,
	 * each from its start to its finish (AgentCompactDone, in cxt).
	 */
	List	   *done;

	/* the message */
	char	   *message_id;
	Jsonb	   *metadata;
	AgentParts	parts;
	int			step_first;		/* first part since the last finish-step */
	int			chunks;			/* chunks compacted and delivered */
	bool		complete;
	bool		aborted;
	char	   *agent_error;
	char	   *finish_reason;
} AgentCompact;

extern void agent_compact_init(AgentCompact *ac, MemoryContext cxt,
							   AgentStreamChunkCallback callback,
							   void *callback_arg);
extern void agent_compact_deliver(AgentCompact *ac, Jsonb *chunk);
extern void agent_compact_fail(AgentCompact *ac, const char *message);
extern void agent_compact_result(AgentCompact *ac, AgentStreamResult *result);
extern Jsonb *agent_compact_message(AgentCompact *ac, const char *fallback_id);
extern Jsonb **agent_compact_messages(AgentCompact *ac, const char *fallback_id,
									  int *count);

#endif							/* FLEETLM_AGENT_COMPACT_H */

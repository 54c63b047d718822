/*-------------------------------------------------------------------------
 *
 * agent_parts.h
 *	  The parts of the assistant message an agent's reply is compacted
 *	  into: their list, their index by id, and their jsonb shape.
 *
 * src/agent_parts.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_AGENT_PARTS_H
#define FLEETLM_AGENT_PARTS_H

#include "lib/stringinfo.h"
#include "utils/jsonb.h"

/* The kinds of parts of the compacted message */
typedef enum AgentPartKind
{
	AGENT_PART_TEXT,			/* {"type": "text", ...} */
	AGENT_PART_REASONING,		/* {"type": "reasoning", ...} */
	AGENT_PART_TOOL,			/* {"type": "tool-<name>" or "dynamic-tool"} */
	AGENT_PART_STEP,			/* {"type": "step-start"} */
	AGENT_PART_DATA,			/* a data-* chunk, its data replaceable */
	AGENT_PART_RAW				/* a fixed object: sources, files, unknown
								 * chunks */
} AgentPartKind;

/* Namespaces of the part index: which parts an id is looked up among */
#define AGENT_NS_NONE		0
#define AGENT_NS_TEXT		1
#define AGENT_NS_REASONING	2
#define AGENT_NS_TOOL		3
#define AGENT_NS_DATA		4

/* One part of the message being compacted */
typedef struct AgentPart
{
	AgentPartKind kind;
	char	   *id;				/* text and reasoning: the chunks' id; tool:
								 * toolCallId; data: id, or NULL */
	int			id_len;
	char	   *type;			/* data: the chunk's type */
	bool		indexed;		/* in the part index */
	int			next;			/* next part in its index bucket, or -1 */
	bool		active;			/* text and reasoning: -delta, -end accepted */
	bool		done;			/* text and reasoning: -end seen */
	StringInfoData text;		/* text and reasoning: the text; tool: the
								 * input text of tool-input-delta */
	Jsonb	   *provider_metadata;	/* text and reasoning: providerMetadata;
									 * tool: callProviderMetadata */
	/* tool parts, as the AI SDK's updateToolPart leaves them */
	char	   *tool_name;
	bool		dynamic;		/* "dynamic-tool", with a toolName field */
	bool		input_streamed; /* tool-input-start seen: deltas accepted */
	const char *state;
	Jsonb	   *input;			/* NULL = absent */
	Jsonb	   *output;
	Jsonb	   *raw_input;
	char	   *error_text;
	int			provider_executed;	/* -1 absent, else 0 or 1 */
	int			preliminary;	/* -1 absent, else 0 or 1 */
	/* data and raw parts */
	Jsonb	   *raw;			/* the part's object */
	Jsonb	   *data;			/* data: the latest data, NULL if absent */
} AgentPart;

/* The parts, in order, and their index */
typedef struct AgentParts
{
	MemoryContext cxt;			/* where the parts live */
	AgentPart **items;
	int			n;
	int			max;
	int		   *buckets;		/* part index: chain heads, -1 = empty */
	int			nbuckets;		/* a power of 2 */
	int			nindexed;
} AgentParts;

extern void agent_parts_init(AgentParts *parts, MemoryContext cxt);
extern AgentPart *agent_parts_add(AgentParts *parts, AgentPartKind kind,
								  JsonbValue *id);
extern void agent_parts_index(AgentParts *parts, int partno);
extern AgentPart *agent_parts_find(AgentParts *parts, int ns,
								   const char *type, const char *id,
								   int id_len);
extern Jsonb *agent_parts_tool_input(AgentPart *p);
extern void agent_parts_push(JsonbParseState **ps, AgentPart *p);

#endif							/* FLEETLM_AGENT_PARTS_H */

/*-------------------------------------------------------------------------
 *
 * agent_openai.h
 *	  Protocol openai of the agent engine's reply parser: OpenAI
 *	  chat.completion.chunk objects translated into UI-message-stream
 *	  chunks.
 *
 * src/agent_openai.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_AGENT_OPENAI_H
#define FLEETLM_AGENT_OPENAI_H

#include "utils/jsonb.h"

#include "agent_compact.h"

typedef struct AgentOpenAI AgentOpenAI;

extern AgentOpenAI *agent_openai_create(AgentCompact *out);
extern void agent_openai_object(AgentOpenAI *oa, Jsonb *obj);

#endif							/* FLEETLM_AGENT_OPENAI_H */

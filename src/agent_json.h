/*-------------------------------------------------------------------------
 *
 * agent_json.h
 *	  JSON for the agent engine's reply parser: agent-provided text parsed
 *	  into jsonb without raising errors about it, fields read, chunks and
 *	  parts built.
 *
 * src/agent_json.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_AGENT_JSON_H
#define FLEETLM_AGENT_JSON_H

#include "utils/jsonb.h"

extern Jsonb *agent_json_parse(const char *text, size_t len, char **error);
extern bool agent_json_blank(const char *s, size_t len);
extern JsonbValue *agent_json_get(JsonbContainer *obj, const char *key,
								  JsonbValue *buf);
extern bool agent_json_is_object(JsonbValue *v);
extern bool agent_json_next_field(JsonbIterator **it, JsonbValue *key,
								  JsonbValue *value);

extern void agent_json_push_key(JsonbParseState **ps, const char *key);
extern void agent_json_push_string(JsonbParseState **ps,
								   JsonbIteratorToken tok,
								   const char *s, int len);
extern void agent_json_push_kv(JsonbParseState **ps, const char *key,
							   const char *value);
extern void agent_json_push_jsonb(JsonbParseState **ps,
								  JsonbIteratorToken tok, Jsonb *jb);
extern void agent_json_push_field(JsonbParseState **ps, const char *key,
								  Jsonb *jb);

#endif							/* FLEETLM_AGENT_JSON_H */

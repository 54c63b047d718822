/*-------------------------------------------------------------------------
 *
 * agent_parts.c
 *	  The parts of the assistant message an agent's reply is compacted
 *	  into: their list, their index by id, and their jsonb shape.
 *
 * The compactor (agent_compact.c) decides what the parts hold; this file
 * keeps them in order, finds the part an id belongs to, and writes a part
 * in the AI SDK's UIMessage shape.
 *
 * The index is a hash table of chains through AgentPart.next, keyed by
 * namespace (text, reasoning, tool, data), id and, for data parts, type.
 * A chain lists the newest part first, so a lookup finds the part an id
 * was given to last; that is the AI SDK's map of active text parts, and
 * tool and data parts are indexed only once per id.  It is a hash table so
 * that a reply of many parts and chunks costs linear time.
 *
 * src/agent_parts.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "utils/jsonb.h"

#include "agent_json.h"
#include "agent_parts.h"

static int	agent_parts_ns(AgentPart *p);
static uint32 agent_parts_hash(int ns, const char *type, const char *id,
							   int id_len);
static void agent_parts_rebuild(AgentParts *parts, int nbuckets);
static void agent_parts_push_flag(JsonbParseState **ps, const char *key,
								  int flag);

/*
 * No parts yet; they will live in cxt.
 */
void
agent_parts_init(AgentParts *parts, MemoryContext cxt)
{
	parts->cxt = cxt;
	parts->n = 0;
	parts->max = 16;
	parts->items = MemoryContextAlloc(cxt, parts->max * sizeof(AgentPart *));
	parts->nbuckets = 64;
	parts->buckets = MemoryContextAlloc(cxt, parts->nbuckets * sizeof(int));
	memset(parts->buckets, -1, parts->nbuckets * sizeof(int));
	parts->nindexed = 0;
}

/*
 * Append a new part of the given kind, with id (a JSON string) or none.
 */
AgentPart *
agent_parts_add(AgentParts *parts, AgentPartKind kind, JsonbValue *id)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(parts->cxt);
	AgentPart  *p;

	if (parts->n == parts->max)
	{
		parts->max *= 2;
		parts->items = repalloc(parts->items, parts->max * sizeof(AgentPart *));
	}
	p = palloc0(sizeof(AgentPart));
	p->kind = kind;
	p->next = -1;
	p->provider_executed = -1;
	p->preliminary = -1;
	if (id != NULL)
	{
		p->id = pnstrdup(id->val.string.val, id->val.string.len);
		p->id_len = id->val.string.len;
	}
	if (kind == AGENT_PART_TEXT || kind == AGENT_PART_REASONING ||
		kind == AGENT_PART_TOOL)
		initStringInfo(&p->text);
	parts->items[parts->n++] = p;
	MemoryContextSwitchTo(oldcxt);
	return p;
}

/*
 * The index namespace of a part, AGENT_NS_NONE if it is not looked up.
 */
static int
agent_parts_ns(AgentPart *p)
{
	switch (p->kind)
	{
		case AGENT_PART_TEXT:
			return AGENT_NS_TEXT;
		case AGENT_PART_REASONING:
			return AGENT_NS_REASONING;
		case AGENT_PART_TOOL:
			return AGENT_NS_TOOL;
		case AGENT_PART_DATA:
			return p->id ? AGENT_NS_DATA : AGENT_NS_NONE;
		default:
			return AGENT_NS_NONE;
	}
}

/*
 * Hash of an index key: namespace, id and (data parts) type.
 */
static uint32
agent_parts_hash(int ns, const char *type, const char *id, int id_len)
{
	uint32		h = hash_combine((uint32) ns,
								 hash_bytes((const unsigned char *) id, id_len));

	if (type != NULL)
		h = hash_combine(h, hash_bytes((const unsigned char *) type,
									   strlen(type)));
	return h;
}

/*
 * Index part number partno by its id (and, for a data part, its type,
 * which must be set by now), newest first in its chain.
 */
void
agent_parts_index(AgentParts *parts, int partno)
{
	AgentPart  *p = parts->items[partno];
	uint32		h = agent_parts_hash(agent_parts_ns(p), p->type,
									 p->id, p->id_len);
	int			b = h & (parts->nbuckets - 1);

	p->next = parts->buckets[b];
	parts->buckets[b] = partno;
	p->indexed = true;
	parts->nindexed++;
	if (parts->nindexed > 2 * parts->nbuckets)
		agent_parts_rebuild(parts, parts->nbuckets * 4);
}

/*
 * Rebuild the part index with nbuckets buckets, keeping the chains newest
 * first.
 */
static void
agent_parts_rebuild(AgentParts *parts, int nbuckets)
{
	int		   *buckets = MemoryContextAlloc(parts->cxt, nbuckets * sizeof(int));

	memset(buckets, -1, nbuckets * sizeof(int));
	for (int i = 0; i < parts->n; i++)
	{
		AgentPart  *p = parts->items[i];
		int			b;

		if (!p->indexed)
			continue;
		b = agent_parts_hash(agent_parts_ns(p), p->type,
							 p->id, p->id_len) & (nbuckets - 1);
		p->next = buckets[b];
		buckets[b] = i;
	}
	pfree(parts->buckets);
	parts->buckets = buckets;
	parts->nbuckets = nbuckets;
}

/*
 * The newest indexed part with this namespace, type (data parts) and id,
 * or NULL.
 */
AgentPart *
agent_parts_find(AgentParts *parts, int ns, const char *type, const char *id,
				 int id_len)
{
	uint32		h = agent_parts_hash(ns, type, id, id_len);

	for (int i = parts->buckets[h & (parts->nbuckets - 1)]; i >= 0;
		 i = parts->items[i]->next)
	{
		AgentPart  *p = parts->items[i];

		if (agent_parts_ns(p) == ns && p->id_len == id_len &&
			memcmp(p->id, id, id_len) == 0 &&
			(type == NULL || strcmp(p->type, type) == 0))
			return p;
	}
	return NULL;
}

/*
 * A tool part's input: the one it was given, or, while it streams, the
 * text of its deltas if that is complete JSON (in the current context);
 * NULL if neither.
 */
Jsonb *
agent_parts_tool_input(AgentPart *p)
{
	char	   *error;

	if (p->input != NULL || strcmp(p->state, "input-streaming") != 0 ||
		p->text.len == 0)
		return p->input;
	return agent_json_parse(p->text.data, p->text.len, &error);
}

/*
 * Push a key and a boolean value, unless flag is -1 (absent).
 */
static void
agent_parts_push_flag(JsonbParseState **ps, const char *key, int flag)
{
	JsonbValue	b;

	if (flag < 0)
		return;
	agent_json_push_key(ps, key);
	b.type = jbvBool;
	b.val.boolean = flag == 1;
	pushJsonbValue(ps, WJB_VALUE, &b);
}

/*
 * Push one part of the message, in the AI SDK's UIMessage shape, as an
 * array element.
 */
void
agent_parts_push(JsonbParseState **ps, AgentPart *p)
{
	switch (p->kind)
	{
		case AGENT_PART_TEXT:
		case AGENT_PART_REASONING:
			pushJsonbValue(ps, WJB_BEGIN_OBJECT, NULL);
			agent_json_push_kv(ps, "type",
							   p->kind == AGENT_PART_TEXT ? "text" : "reasoning");
			agent_json_push_key(ps, "text");
			agent_json_push_string(ps, WJB_VALUE, p->text.data, p->text.len);
			agent_json_push_kv(ps, "state", p->done ? "done" : "streaming");
			agent_json_push_field(ps, "providerMetadata", p->provider_metadata);
			pushJsonbValue(ps, WJB_END_OBJECT, NULL);
			break;

		case AGENT_PART_TOOL:
			pushJsonbValue(ps, WJB_BEGIN_OBJECT, NULL);
			if (p->dynamic)
			{
				agent_json_push_kv(ps, "type", "dynamic-tool");
				agent_json_push_kv(ps, "toolName", p->tool_name);
			}
			else
				agent_json_push_kv(ps, "type",
								   psprintf("tool-%s", p->tool_name));
			agent_json_push_kv(ps, "toolCallId", p->id);
			agent_json_push_kv(ps, "state", p->state);
			agent_json_push_field(ps, "input", agent_parts_tool_input(p));
			agent_json_push_field(ps, "output", p->output);
			agent_json_push_field(ps, "rawInput", p->raw_input);
			if (p->error_text != NULL)
				agent_json_push_kv(ps, "errorText", p->error_text);
			agent_parts_push_flag(ps, "providerExecuted", p->provider_executed);
			agent_parts_push_flag(ps, "preliminary", p->preliminary);
			agent_json_push_field(ps, "callProviderMetadata",
								  p->provider_metadata);
			pushJsonbValue(ps, WJB_END_OBJECT, NULL);
			break;

		case AGENT_PART_STEP:
			pushJsonbValue(ps, WJB_BEGIN_OBJECT, NULL);
			agent_json_push_kv(ps, "type", "step-start");
			pushJsonbValue(ps, WJB_END_OBJECT, NULL);
			break;

		case AGENT_PART_DATA:
			{
				JsonbIterator *it = JsonbIteratorInit(&p->raw->root);
				JsonbValue	k;
				JsonbValue	v;

				/* the chunk's fields, with the latest data */
				pushJsonbValue(ps, WJB_BEGIN_OBJECT, NULL);
				while (agent_json_next_field(&it, &k, &v))
				{
					if (k.val.string.len == 4 &&
						memcmp(k.val.string.val, "data", 4) == 0)
						continue;
					pushJsonbValue(ps, WJB_KEY, &k);
					pushJsonbValue(ps, WJB_VALUE, &v);
				}
				agent_json_push_field(ps, "data", p->data);
				pushJsonbValue(ps, WJB_END_OBJECT, NULL);
			}
			break;

		case AGENT_PART_RAW:
			agent_json_push_jsonb(ps, WJB_ELEM, p->raw);
			break;
	}
}

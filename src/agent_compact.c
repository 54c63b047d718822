/*-------------------------------------------------------------------------
 *
 * agent_compact.c
 *	  Compaction of AI SDK UI-message-stream chunks into one assistant
 *	  message, and their delivery to the stream's chunk callback.
 *
 * Each chunk is compacted as the AI SDK's processUIMessageStream does
 * (version 5, as far as we know it; agent_compact_chunk lists where we
 * differ): text and reasoning parts grow by their deltas, tool parts move
 * through the states of the AI SDK's updateToolPart, data parts with an id
 * are replaced in place, sources and files are copied, and metadata is
 * merged deeply.  The chunks come from the agent (protocol fleetlm) or
 * from the translation of an openai reply (agent_openai.c).
 *
 * A chunk that breaks the protocol sets failure (the first one counts) and
 * is not delivered; the stream turns it into its MALFORMED status and
 * reads nothing more.  Nothing about the input raises an error.
 *
 * Memory.  What the message keeps is copied into cxt, the stream's
 * context; the rest lives in the current context, the stream's per-object
 * one, reset after each JSON object.
 *
 * src/agent_compact.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "utils/jsonb.h"

#include "agent_compact.h"
#include "agent_json.h"
#include "agent_parts.h"

/* Longest agent-provided string quoted in a failure message, in bytes */
#define AGENT_COMPACT_QUOTE_MAX	100

static void agent_compact_chunk(AgentCompact *ac, Jsonb *chunk);
static char *agent_compact_quote(const char *s, int len);

/* fields of the chunk being compacted */
static bool agent_compact_string(AgentCompact *ac, Jsonb *chunk,
								 const char *key, bool required,
								 JsonbValue *out);
static bool agent_compact_mistyped(AgentCompact *ac, const char *key,
								   const char *what);
static bool agent_compact_bool(AgentCompact *ac, Jsonb *chunk,
							   const char *key, int *out);
static Jsonb *agent_compact_value(AgentCompact *ac, Jsonb *chunk,
								  const char *key, bool null_is_absent);
static bool agent_compact_keep_string(AgentCompact *ac, Jsonb *chunk,
									  const char *key, char **dest);
static Jsonb *agent_compact_keep(AgentCompact *ac, Jsonb *jb);
static char *agent_compact_strdup(AgentCompact *ac, JsonbValue *v);

/* the parts */
static void agent_compact_text_start(AgentCompact *ac, Jsonb *chunk,
									 AgentPartKind kind);
static void agent_compact_text_delta(AgentCompact *ac, Jsonb *chunk,
									 AgentPartKind kind, bool end);
static AgentPart *agent_compact_tool_part(AgentCompact *ac,
										  JsonbValue *call_id,
										  JsonbValue *name, int dynamic);
static AgentPart *agent_compact_tool_known(AgentCompact *ac,
										   JsonbValue *call_id,
										   bool streamed);
static void agent_compact_tool_update(AgentPart *p, const char *state,
									  Jsonb *input, Jsonb *output,
									  Jsonb *raw_input, char *error_text,
									  int preliminary, int provider_executed,
									  Jsonb *provider_metadata);
static Jsonb *agent_compact_tool_input(AgentCompact *ac, AgentPart *p);
static void agent_compact_tool_chunk(AgentCompact *ac, Jsonb *chunk,
									 const char *type);
static void agent_compact_fixed(AgentCompact *ac, Jsonb *chunk,
								const char *const *required,
								const char *const *optional);
static void agent_compact_data(AgentCompact *ac, Jsonb *chunk,
							   const char *type);

/* metadata */
static void agent_compact_metadata(AgentCompact *ac, Jsonb *chunk);
static void agent_compact_merge_metadata(AgentCompact *ac, Jsonb *meta);
static JsonbValue *agent_compact_merge(JsonbParseState **ps,
									   JsonbContainer *base,
									   JsonbContainer *over);


/* ------------------------------------------------------------------------
 * The compactor
 * ------------------------------------------------------------------------
 */

/*
 * An empty message, kept in cxt; callback, if not NULL, gets each chunk
 * as it is compacted.
 */
void
agent_compact_init(AgentCompact *ac, MemoryContext cxt,
				   AgentStreamChunkCallback callback, void *callback_arg)
{
	memset(ac, 0, sizeof(AgentCompact));
	ac->cxt = cxt;
	ac->callback = callback;
	ac->callback_arg = callback_arg;
	agent_parts_init(&ac->parts, cxt);
}

/*
 * One UI-message-stream chunk: compact it, count it, hand it to the
 * callback.  A chunk that breaks the protocol is not delivered, nor is
 * any after it.
 */
void
agent_compact_deliver(AgentCompact *ac, Jsonb *chunk)
{
	MemoryContext oldcxt;

	if (ac->failure != NULL)
		return;
	agent_compact_chunk(ac, chunk);
	ac->cur_type = NULL;
	if (ac->failure != NULL)
		return;
	ac->chunks++;
	if (ac->callback == NULL)
		return;
	oldcxt = MemoryContextSwitchTo(ac->caller_cxt);
	ac->callback(ac->callback_arg, ac->chunks, chunk);
	MemoryContextSwitchTo(oldcxt);
}

/*
 * The reply breaks its protocol: keep the first message (in the stream's
 * context); later ones are consequences.
 */
void
agent_compact_fail(AgentCompact *ac, const char *message)
{
	if (ac->failure == NULL)
		ac->failure = MemoryContextStrdup(ac->cxt, message);
}

/*
 * The compactor's fields of the stream's result.  The strings belong to
 * the compactor.
 */
void
agent_compact_result(AgentCompact *ac, AgentStreamResult *result)
{
	result->complete = ac->complete;
	result->aborted = ac->aborted;
	result->agent_error = ac->agent_error;
	result->finish_reason = ac->finish_reason;
	result->chunks = ac->chunks;
}

/* A message completed before the current one (AgentCompact.done) */
typedef struct AgentCompactDone
{
	char	   *message_id;
	Jsonb	   *metadata;
	AgentParts	parts;
} AgentCompactDone;

/*
 * A message {"id", "role": "assistant", "metadata"?, "parts"}, in the
 * current memory context.
 */
static Jsonb *
agent_compact_build(const char *id, Jsonb *metadata, AgentParts *parts)
{
	JsonbParseState *ps = NULL;
	JsonbValue *res;

	pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	agent_json_push_kv(&ps, "id", id);
	agent_json_push_kv(&ps, "role", "assistant");
	agent_json_push_field(&ps, "metadata", metadata);
	agent_json_push_key(&ps, "parts");
	pushJsonbValue(&ps, WJB_BEGIN_ARRAY, NULL);
	for (int i = 0; i < parts->n; i++)
		agent_parts_push(&ps, parts->items[i]);
	pushJsonbValue(&ps, WJB_END_ARRAY, NULL);
	res = pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}

/*
 * A start after a finish (or abort) begins a new message: keep the
 * finished one aside, start afresh.
 */
static void
agent_compact_next_message(AgentCompact *ac)
{
	MemoryContext old = MemoryContextSwitchTo(ac->cxt);
	AgentCompactDone *d = palloc(sizeof(AgentCompactDone));

	d->message_id = ac->message_id;
	d->metadata = ac->metadata;
	d->parts = ac->parts;
	ac->done = lappend(ac->done, d);
	MemoryContextSwitchTo(old);

	ac->message_id = NULL;
	ac->metadata = NULL;
	agent_parts_init(&ac->parts, ac->cxt);
	ac->step_first = 0;
	ac->complete = false;
	ac->aborted = false;
	ac->finish_reason = NULL;
}

/*
 * Every message of the reply, in order, in the current memory context:
 * those completed before (AgentCompact.done), then the current one.  A
 * message without start's messageId gets fallback_id, and the second and
 * later ones fallback_id-2, -3, ...
 */
Jsonb **
agent_compact_messages(AgentCompact *ac, const char *fallback_id, int *count)
{
	int			n = list_length(ac->done) + 1;
	Jsonb	  **out = palloc(sizeof(Jsonb *) * n);
	int			i = 0;
	ListCell   *lc;

	if (fallback_id == NULL)
		elog(ERROR, "agent_stream_message needs a fallback_id");
	foreach(lc, ac->done)
	{
		AgentCompactDone *d = lfirst(lc);
		const char *id = d->message_id ? d->message_id :
			(i == 0 ? fallback_id : psprintf("%s-%d", fallback_id, i + 1));

		out[i++] = agent_compact_build(id, d->metadata, &d->parts);
	}
	out[i] = agent_compact_build(ac->message_id ? ac->message_id :
								 (i == 0 ? fallback_id : psprintf("%s-%d", fallback_id, i + 1)),
								 ac->metadata, &ac->parts);
	*count = n;
	return out;
}

/*
 * The compacted message, {"id", "role": "assistant", "metadata"?,
 * "parts"}, in the current memory context: the last (or only) message of
 * the reply.  The id is start's messageId, or else fallback_id.  It can
 * be built at any time, also after a failure (it then holds what came
 * before).
 */
Jsonb *
agent_compact_message(AgentCompact *ac, const char *fallback_id)
{
	JsonbParseState *ps = NULL;
	JsonbValue *res;
	const char *id = ac->message_id ? ac->message_id : fallback_id;

	if (id == NULL)
		elog(ERROR, "agent_stream_message needs a fallback_id");

	pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	agent_json_push_kv(&ps, "id", id);
	agent_json_push_kv(&ps, "role", "assistant");
	agent_json_push_field(&ps, "metadata", ac->metadata);
	agent_json_push_key(&ps, "parts");
	pushJsonbValue(&ps, WJB_BEGIN_ARRAY, NULL);
	for (int i = 0; i < ac->parts.n; i++)
		agent_parts_push(&ps, ac->parts.items[i]);
	pushJsonbValue(&ps, WJB_END_ARRAY, NULL);
	res = pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}

/*
 * Compact one chunk into the message, as the AI SDK's
 * processUIMessageStream does.  Chunks it would reject are failures: a
 * missing or mistyped field, a -delta or -end for a text or reasoning part
 * that is not active, a tool-input-delta without tool-input-start, a tool
 * output for an unknown tool call.  Where we differ:
 *
 *	- an unknown type is kept as a part of its own, in order (the AI SDK
 *	  rejects it; issue 11 says forward);
 *	- while a tool's input streams, its part has "input" only once the
 *	  concatenated text is complete JSON (the AI SDK shows a repaired
 *	  partial object); a compacted message is read at the end, when a
 *	  finished tool call has its input from tool-input-available anyway;
 *	- finish's finishReason is not in the message (the AI SDK keeps it
 *	  beside the message too); the caller gets it in the result;
 *	- JSON null counts as absent for the optional string, boolean and
 *	  metadata fields.
 */
static void
agent_compact_chunk(AgentCompact *ac, Jsonb *chunk)
{
	static const char *const url_required[] = {"sourceId", "url", NULL};
	static const char *const url_optional[] = {"title", NULL};
	static const char *const doc_required[] = {"sourceId", "mediaType", "title", NULL};
	static const char *const doc_optional[] = {"filename", NULL};
	static const char *const file_required[] = {"url", "mediaType", NULL};
	static const char *const file_optional[] = {NULL};
	JsonbValue	tv;
	JsonbValue *t = agent_json_get(&chunk->root, "type", &tv);
	const char *type;

	if (t == NULL || t->type != jbvString)
	{
		agent_compact_fail(ac, psprintf("chunk %d of the reply has no \"type\" string",
										ac->nread));
		return;
	}
	type = pnstrdup(t->val.string.val, t->val.string.len);
	ac->cur_type = type;

	if (strcmp(type, "text-start") == 0)
		agent_compact_text_start(ac, chunk, AGENT_PART_TEXT);
	else if (strcmp(type, "text-delta") == 0)
		agent_compact_text_delta(ac, chunk, AGENT_PART_TEXT, false);
	else if (strcmp(type, "text-end") == 0)
		agent_compact_text_delta(ac, chunk, AGENT_PART_TEXT, true);
	else if (strcmp(type, "reasoning-start") == 0)
		agent_compact_text_start(ac, chunk, AGENT_PART_REASONING);
	else if (strcmp(type, "reasoning-delta") == 0)
		agent_compact_text_delta(ac, chunk, AGENT_PART_REASONING, false);
	else if (strcmp(type, "reasoning-end") == 0)
		agent_compact_text_delta(ac, chunk, AGENT_PART_REASONING, true);
	else if (strncmp(type, "tool-input-", 11) == 0 ||
			 strncmp(type, "tool-output-", 12) == 0)
		agent_compact_tool_chunk(ac, chunk, type);
	else if (strcmp(type, "source-url") == 0)
		agent_compact_fixed(ac, chunk, url_required, url_optional);
	else if (strcmp(type, "source-document") == 0)
		agent_compact_fixed(ac, chunk, doc_required, doc_optional);
	else if (strcmp(type, "file") == 0)
		agent_compact_fixed(ac, chunk, file_required, file_optional);
	else if (strncmp(type, "data-", 5) == 0)
		agent_compact_data(ac, chunk, type);
	else if (strcmp(type, "start-step") == 0)
		agent_parts_add(&ac->parts, AGENT_PART_STEP, NULL);
	else if (strcmp(type, "finish-step") == 0)
	{
		/* the AI SDK forgets the step's active text and reasoning parts */
		for (int i = ac->step_first; i < ac->parts.n; i++)
			ac->parts.items[i]->active = false;
		ac->step_first = ac->parts.n;
	}
	else if (strcmp(type, "start") == 0)
	{
		if (ac->complete)
			agent_compact_next_message(ac);
		if (agent_compact_keep_string(ac, chunk, "messageId", &ac->message_id))
			agent_compact_metadata(ac, chunk);
	}
	else if (strcmp(type, "finish") == 0)
	{
		if (!agent_compact_keep_string(ac, chunk, "finishReason",
									   &ac->finish_reason))
			return;
		agent_compact_metadata(ac, chunk);
		ac->complete = true;
	}
	else if (strcmp(type, "abort") == 0)
	{
		ac->aborted = true;
		ac->complete = true;
	}
	else if (strcmp(type, "message-metadata") == 0)
		agent_compact_metadata(ac, chunk);
	else if (strcmp(type, "error") == 0)
	{
		JsonbValue	text;

		if (!agent_compact_string(ac, chunk, "errorText", true, &text))
			return;
		if (ac->agent_error == NULL)
			ac->agent_error = agent_compact_strdup(ac, &text);
	}
	else
	{
		AgentPart  *p = agent_parts_add(&ac->parts, AGENT_PART_RAW, NULL);

		p->raw = agent_compact_keep(ac, chunk);
	}
}

/*
 * An agent-provided string for a failure message, cut (on a character
 * boundary) to AGENT_COMPACT_QUOTE_MAX bytes.
 */
static char *
agent_compact_quote(const char *s, int len)
{
	int			clip = pg_mbcliplen(s, len, AGENT_COMPACT_QUOTE_MAX);

	if (clip < len)
		return psprintf("%.*s...", clip, s);
	return pnstrdup(s, len);
}


/* ------------------------------------------------------------------------
 * Fields of the chunk being compacted
 * ------------------------------------------------------------------------
 */

/*
 * A string field of the chunk being compacted, into *out, pointing into
 * the chunk; out->type is jbvNull if it is absent or null.  Returns false,
 * having failed the stream, if a required one is absent or if it is not a
 * string.
 */
static bool
agent_compact_string(AgentCompact *ac, Jsonb *chunk, const char *key,
					 bool required, JsonbValue *out)
{
	JsonbValue *v = agent_json_get(&chunk->root, key, out);

	if (v == NULL || v->type == jbvNull)
	{
		out->type = jbvNull;
		if (!required)
			return true;
		agent_compact_fail(ac, psprintf("chunk %d of the reply (\"%s\") has no \"%s\"",
										ac->nread, ac->cur_type, key));
		return false;
	}
	if (v->type != jbvString)
		return agent_compact_mistyped(ac, key, "string");
	return true;
}

/*
 * Fail the stream because field key of the chunk being compacted is not a
 * what (string, boolean).  Returns false.
 */
static bool
agent_compact_mistyped(AgentCompact *ac, const char *key, const char *what)
{
	agent_compact_fail(ac, psprintf("\"%s\" of chunk %d of the reply (\"%s\") is not a %s",
									key, ac->nread, ac->cur_type, what));
	return false;
}

/*
 * An optional boolean field of the chunk being compacted: *out is -1 if it
 * is absent or null, else 0 or 1.  Returns false, having failed the
 * stream, if it is something else.
 */
static bool
agent_compact_bool(AgentCompact *ac, Jsonb *chunk, const char *key, int *out)
{
	JsonbValue	buf;
	JsonbValue *v = agent_json_get(&chunk->root, key, &buf);

	*out = -1;
	if (v == NULL || v->type == jbvNull)
		return true;
	if (v->type != jbvBool)
		return agent_compact_mistyped(ac, key, "boolean");
	*out = v->val.boolean ? 1 : 0;
	return true;
}

/*
 * A field of the chunk, any JSON value, copied into the stream's context;
 * NULL if absent (or null, if null_is_absent).
 */
static Jsonb *
agent_compact_value(AgentCompact *ac, Jsonb *chunk, const char *key,
					bool null_is_absent)
{
	JsonbValue	buf;
	JsonbValue *v = agent_json_get(&chunk->root, key, &buf);
	MemoryContext oldcxt;
	Jsonb	   *jb;

	if (v == NULL || (null_is_absent && v->type == jbvNull))
		return NULL;
	oldcxt = MemoryContextSwitchTo(ac->cxt);
	jb = JsonbValueToJsonb(v);
	MemoryContextSwitchTo(oldcxt);
	return jb;
}

/*
 * An optional string field of the chunk: if present, *dest becomes a copy
 * of it in the stream's context; if absent or null, *dest is left alone.
 * Returns false, having failed the stream, if it is not a string.
 */
static bool
agent_compact_keep_string(AgentCompact *ac, Jsonb *chunk, const char *key,
						  char **dest)
{
	JsonbValue	v;

	if (!agent_compact_string(ac, chunk, key, false, &v))
		return false;
	if (v.type == jbvString)
		*dest = agent_compact_strdup(ac, &v);
	return true;
}

/*
 * A copy of jb in the stream's context.
 */
static Jsonb *
agent_compact_keep(AgentCompact *ac, Jsonb *jb)
{
	Jsonb	   *copy = MemoryContextAlloc(ac->cxt, VARSIZE(jb));

	memcpy(copy, jb, VARSIZE(jb));
	return copy;
}

/*
 * A JSON string value as a C string in the stream's context.
 */
static char *
agent_compact_strdup(AgentCompact *ac, JsonbValue *v)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(ac->cxt);
	char	   *s = pnstrdup(v->val.string.val, v->val.string.len);

	MemoryContextSwitchTo(oldcxt);
	return s;
}


/* ------------------------------------------------------------------------
 * The parts
 * ------------------------------------------------------------------------
 */

/*
 * text-start, reasoning-start: a new active part for the id.
 */
static void
agent_compact_text_start(AgentCompact *ac, Jsonb *chunk, AgentPartKind kind)
{
	JsonbValue	id;
	AgentPart  *p;

	if (!agent_compact_string(ac, chunk, "id", true, &id))
		return;
	p = agent_parts_add(&ac->parts, kind, &id);
	p->active = true;
	p->provider_metadata = agent_compact_value(ac, chunk, "providerMetadata", true);
	agent_parts_index(&ac->parts, ac->parts.n - 1);
}

/*
 * text-delta and text-end (end), and their reasoning twins: extend or
 * close the active part of the id.
 */
static void
agent_compact_text_delta(AgentCompact *ac, Jsonb *chunk, AgentPartKind kind,
						 bool end)
{
	JsonbValue	id;
	JsonbValue	delta;
	AgentPart  *p;
	Jsonb	   *pm;

	if (!agent_compact_string(ac, chunk, "id", true, &id) ||
		(!end && !agent_compact_string(ac, chunk, "delta", true, &delta)))
		return;
	p = agent_parts_find(&ac->parts,
						 kind == AGENT_PART_TEXT ? AGENT_NS_TEXT : AGENT_NS_REASONING,
						 NULL, id.val.string.val, id.val.string.len);
	if (p == NULL || !p->active)
	{
		agent_compact_fail(ac, psprintf("chunk %d of the reply (\"%s\") is for no active %s part: \"%s\"",
										ac->nread, ac->cur_type,
										kind == AGENT_PART_TEXT ? "text" : "reasoning",
										agent_compact_quote(id.val.string.val,
															id.val.string.len)));
		return;
	}
	if (end)
	{
		p->active = false;
		p->done = true;
	}
	else
		appendBinaryStringInfo(&p->text, delta.val.string.val,
							   delta.val.string.len);
	pm = agent_compact_value(ac, chunk, "providerMetadata", true);
	if (pm != NULL)
		p->provider_metadata = pm;
}

/*
 * The tool part of a tool call, created (type "tool-<name>", or
 * "dynamic-tool") if there is none yet.
 */
static AgentPart *
agent_compact_tool_part(AgentCompact *ac, JsonbValue *call_id,
						JsonbValue *name, int dynamic)
{
	AgentPart  *p = agent_parts_find(&ac->parts, AGENT_NS_TOOL, NULL,
									 call_id->val.string.val,
									 call_id->val.string.len);

	if (p != NULL)
		return p;
	p = agent_parts_add(&ac->parts, AGENT_PART_TOOL, call_id);
	p->tool_name = agent_compact_strdup(ac, name);
	p->dynamic = dynamic == 1;
	agent_parts_index(&ac->parts, ac->parts.n - 1);
	return p;
}

/*
 * The tool part of a tool call that must exist (and, if streamed, have
 * had a tool-input-start); NULL, having failed the stream, if it does not.
 */
static AgentPart *
agent_compact_tool_known(AgentCompact *ac, JsonbValue *call_id, bool streamed)
{
	AgentPart  *p = agent_parts_find(&ac->parts, AGENT_NS_TOOL, NULL,
									 call_id->val.string.val,
									 call_id->val.string.len);

	if (p != NULL && (!streamed || p->input_streamed))
		return p;
	agent_compact_fail(ac, psprintf("chunk %d of the reply (\"%s\") is for no %stool call: \"%s\"",
									ac->nread, ac->cur_type,
									streamed ? "started " : "",
									agent_compact_quote(call_id->val.string.val,
														call_id->val.string.len)));
	return NULL;
}

/*
 * Set a tool part's state as the AI SDK's updateToolPart does: input,
 * output, rawInput, errorText and preliminary take the given values
 * (NULL / -1 = absent); providerExecuted, once set, stays unless given
 * again.
 */
static void
agent_compact_tool_update(AgentPart *p, const char *state, Jsonb *input,
						  Jsonb *output, Jsonb *raw_input, char *error_text,
						  int preliminary, int provider_executed,
						  Jsonb *provider_metadata)
{
	p->state = state;
	p->input = input;
	p->output = output;
	p->raw_input = raw_input;
	p->error_text = error_text;
	p->preliminary = preliminary;
	if (provider_executed >= 0)
		p->provider_executed = provider_executed;
	if (provider_metadata != NULL)
		p->provider_metadata = provider_metadata;
}

/*
 * A tool part's input as an output finds it (agent_parts_tool_input), in
 * the stream's context.
 */
static Jsonb *
agent_compact_tool_input(AgentCompact *ac, AgentPart *p)
{
	Jsonb	   *input = agent_parts_tool_input(p);

	if (input != NULL && input != p->input)
		input = agent_compact_keep(ac, input);
	return input;
}

/*
 * tool-input-start, -delta, -available, -error and tool-output-available,
 * -error.
 */
static void
agent_compact_tool_chunk(AgentCompact *ac, Jsonb *chunk, const char *type)
{
	JsonbValue	call_id;
	JsonbValue	name;
	JsonbValue	text;
	int			provider_executed;
	int			dynamic;
	int			preliminary;
	AgentPart  *p;

	if (!agent_compact_string(ac, chunk, "toolCallId", true, &call_id) ||
		!agent_compact_bool(ac, chunk, "providerExecuted", &provider_executed) ||
		!agent_compact_bool(ac, chunk, "dynamic", &dynamic))
		return;

	if (strcmp(type, "tool-input-start") == 0)
	{
		if (!agent_compact_string(ac, chunk, "toolName", true, &name))
			return;
		p = agent_compact_tool_part(ac, &call_id, &name, dynamic);
		p->input_streamed = true;
		resetStringInfo(&p->text);
		agent_compact_tool_update(p, "input-streaming", NULL, NULL, NULL, NULL,
								  -1, provider_executed, NULL);
	}
	else if (strcmp(type, "tool-input-delta") == 0)
	{
		if (!agent_compact_string(ac, chunk, "inputTextDelta", true, &text) ||
			(p = agent_compact_tool_known(ac, &call_id, true)) == NULL)
			return;
		appendBinaryStringInfo(&p->text, text.val.string.val,
							   text.val.string.len);
		agent_compact_tool_update(p, "input-streaming", NULL, NULL, NULL, NULL,
								  -1, -1, NULL);
	}
	else if (strcmp(type, "tool-input-available") == 0)
	{
		if (!agent_compact_string(ac, chunk, "toolName", true, &name))
			return;
		p = agent_compact_tool_part(ac, &call_id, &name, dynamic);
		agent_compact_tool_update(p, "input-available",
								  agent_compact_value(ac, chunk, "input", false),
								  NULL, NULL, NULL, -1, provider_executed,
								  agent_compact_value(ac, chunk, "providerMetadata", true));
	}
	else if (strcmp(type, "tool-input-error") == 0)
	{
		if (!agent_compact_string(ac, chunk, "toolName", true, &name) ||
			!agent_compact_string(ac, chunk, "errorText", true, &text))
			return;
		p = agent_compact_tool_part(ac, &call_id, &name, dynamic);
		agent_compact_tool_update(p, "output-error", NULL, NULL,
								  agent_compact_value(ac, chunk, "input", false),
								  agent_compact_strdup(ac, &text), -1,
								  provider_executed,
								  agent_compact_value(ac, chunk, "providerMetadata", true));
	}
	else if (strcmp(type, "tool-output-available") == 0)
	{
		if (!agent_compact_bool(ac, chunk, "preliminary", &preliminary) ||
			(p = agent_compact_tool_known(ac, &call_id, false)) == NULL)
			return;
		agent_compact_tool_update(p, "output-available",
								  agent_compact_tool_input(ac, p),
								  agent_compact_value(ac, chunk, "output", false),
								  NULL, NULL, preliminary, provider_executed,
								  NULL);
	}
	else if (strcmp(type, "tool-output-error") == 0)
	{
		if (!agent_compact_string(ac, chunk, "errorText", true, &text) ||
			(p = agent_compact_tool_known(ac, &call_id, false)) == NULL)
			return;
		agent_compact_tool_update(p, "output-error",
								  agent_compact_tool_input(ac, p), NULL,
								  p->raw_input,
								  agent_compact_strdup(ac, &text), -1,
								  provider_executed, NULL);
	}
	else
	{
		/* tool-input-<something new>: forwarded like any unknown chunk */
		p = agent_parts_add(&ac->parts, AGENT_PART_RAW, NULL);
		p->raw = agent_compact_keep(ac, chunk);
	}
}

/*
 * source-url, source-document, file: a part of the chunk's type with the
 * listed string fields (required ones checked) and providerMetadata, as
 * the AI SDK copies them; other fields are dropped.
 */
static void
agent_compact_fixed(AgentCompact *ac, Jsonb *chunk,
					const char *const *required, const char *const *optional)
{
	JsonbParseState *ps = NULL;
	JsonbValue	v;
	JsonbValue *res;
	AgentPart  *p;

	pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	agent_json_push_kv(&ps, "type", ac->cur_type);
	for (int pass = 0; pass < 2; pass++)
	{
		const char *const *keys = pass == 0 ? required : optional;

		for (int i = 0; keys[i] != NULL; i++)
		{
			if (!agent_compact_string(ac, chunk, keys[i], pass == 0, &v))
				return;
			if (v.type != jbvString)
				continue;
			agent_json_push_key(&ps, keys[i]);
			pushJsonbValue(&ps, WJB_VALUE, &v);
		}
	}
	if (agent_json_get(&chunk->root, "providerMetadata", &v) != NULL &&
		v.type != jbvNull)
	{
		agent_json_push_key(&ps, "providerMetadata");
		pushJsonbValue(&ps, WJB_VALUE, &v);
	}
	res = pushJsonbValue(&ps, WJB_END_OBJECT, NULL);

	p = agent_parts_add(&ac->parts, AGENT_PART_RAW, NULL);
	p->raw = agent_compact_keep(ac, JsonbValueToJsonb(res));
}

/*
 * data-<name>: the chunk is the part.  With an id, a later chunk of the
 * same type and id replaces the earlier one's data, in place.  Transient
 * ones are delivered but not stored.
 */
static void
agent_compact_data(AgentCompact *ac, Jsonb *chunk, const char *type)
{
	JsonbValue	id;
	int			transient;
	Jsonb	   *data;
	AgentPart  *p;

	if (!agent_compact_string(ac, chunk, "id", false, &id) ||
		!agent_compact_bool(ac, chunk, "transient", &transient))
		return;
	if (transient == 1)
		return;
	data = agent_compact_value(ac, chunk, "data", false);
	if (id.type == jbvString)
	{
		p = agent_parts_find(&ac->parts, AGENT_NS_DATA, type,
							 id.val.string.val, id.val.string.len);
		if (p != NULL)
		{
			p->data = data;
			return;
		}
	}
	p = agent_parts_add(&ac->parts, AGENT_PART_DATA,
						id.type == jbvString ? &id : NULL);
	p->type = MemoryContextStrdup(ac->cxt, type);
	p->raw = agent_compact_keep(ac, chunk);
	p->data = data;
	if (p->id != NULL)
		agent_parts_index(&ac->parts, ac->parts.n - 1);
}


/* ------------------------------------------------------------------------
 * Metadata
 * ------------------------------------------------------------------------
 */

/*
 * The chunk's messageMetadata (start, finish, message-metadata), unless
 * absent or null, merged into the message's metadata.
 */
static void
agent_compact_metadata(AgentCompact *ac, Jsonb *chunk)
{
	Jsonb	   *meta = agent_compact_value(ac, chunk, "messageMetadata", true);

	if (meta != NULL)
		agent_compact_merge_metadata(ac, meta);
}

/*
 * Merge messageMetadata (in the stream's context) into the message's
 * metadata, as the AI SDK's mergeObjects does: objects on both sides are
 * merged key by key, recursively; anything else replaces.
 */
static void
agent_compact_merge_metadata(AgentCompact *ac, Jsonb *meta)
{
	JsonbParseState *ps = NULL;
	JsonbValue *res;

	if (ac->metadata == NULL || !JB_ROOT_IS_OBJECT(ac->metadata) ||
		!JB_ROOT_IS_OBJECT(meta))
	{
		ac->metadata = meta;
		return;
	}
	res = agent_compact_merge(&ps, &ac->metadata->root, &meta->root);
	ac->metadata = agent_compact_keep(ac, JsonbValueToJsonb(res));
}

/*
 * Push the merge of two objects: base's keys that over lacks, then over's
 * keys, each merged with base's value if both are objects.
 */
static JsonbValue *
agent_compact_merge(JsonbParseState **ps, JsonbContainer *base,
					JsonbContainer *over)
{
	JsonbIterator *it;
	JsonbValue	k;
	JsonbValue	v;
	JsonbValue	buf;

	pushJsonbValue(ps, WJB_BEGIN_OBJECT, NULL);
	it = JsonbIteratorInit(base);
	while (agent_json_next_field(&it, &k, &v))
	{
		if (getKeyJsonValueFromContainer(over, k.val.string.val,
										 k.val.string.len, &buf) != NULL)
			continue;
		pushJsonbValue(ps, WJB_KEY, &k);
		pushJsonbValue(ps, WJB_VALUE, &v);
	}
	it = JsonbIteratorInit(over);
	while (agent_json_next_field(&it, &k, &v))
	{
		JsonbValue *old;

		pushJsonbValue(ps, WJB_KEY, &k);
		old = getKeyJsonValueFromContainer(base, k.val.string.val,
										   k.val.string.len, &buf);
		if (old != NULL && agent_json_is_object(old) &&
			agent_json_is_object(&v))
			(void) agent_compact_merge(ps, old->val.binary.data,
									   v.val.binary.data);
		else
			pushJsonbValue(ps, WJB_VALUE, &v);
	}
	return pushJsonbValue(ps, WJB_END_OBJECT, NULL);
}

/*-------------------------------------------------------------------------
 *
 * agent_openai.c
 *	  Protocol openai of the agent engine's reply parser: OpenAI
 *	  chat.completion.chunk objects translated into UI-message-stream
 *	  chunks.
 *
 * Each chat.completion.chunk becomes the UI-message-stream chunks that say
 * the same thing (start, text-*, reasoning-*, tool-input-*, finish,
 * message-metadata for usage, error), which are handed to the compactor
 * (agent_compact.c) as if the agent had sent them.  So callers, and the
 * clients of wait_for_stream, see one kind of chunk whatever the agent
 * speaks.
 *
 * A chunk that breaks the protocol fails the compactor, as a UI chunk
 * would; once it has, nothing more is translated.
 *
 * src/agent_openai.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "agent_compact.h"
#include "agent_json.h"
#include "agent_openai.h"

/* One tool call of an openai reply */
typedef struct AgentOpenAITool
{
	int			index;			/* tool_calls[].index */
	char	   *id;
	char	   *name;
	StringInfoData args;		/* function.arguments, concatenated */
} AgentOpenAITool;

/* The translation of one reply */
struct AgentOpenAI
{
	AgentCompact *out;			/* where the chunks go; its cxt is ours */
	bool		started;
	bool		finished;
	bool		text_open;
	bool		reasoning_open;
	int			text_n;			/* text parts opened so far */
	int			reasoning_n;	/* reasoning parts opened so far */
	AgentOpenAITool *tools;
	int			ntools;
	int			maxtools;
};

static void agent_openai_choice(AgentOpenAI *oa, JsonbContainer *choice);
static void agent_openai_text(AgentOpenAI *oa, bool reasoning,
							  JsonbValue *delta);
static void agent_openai_close(AgentOpenAI *oa, bool reasoning);
static void agent_openai_text_chunk(AgentOpenAI *oa, const char *kind,
									const char *what, int partno,
									JsonbValue *delta);
static void agent_openai_tool(AgentOpenAI *oa, JsonbContainer *call,
							  int position);
static AgentOpenAITool *agent_openai_new_tool(AgentOpenAI *oa,
											  JsonbContainer *call,
											  JsonbValue *fn, int index);
static void agent_openai_finish(AgentOpenAI *oa, JsonbValue *reason);
static void agent_openai_error(AgentOpenAI *oa, JsonbValue *error);
static void agent_openai_begin(JsonbParseState **ps, const char *type);
static void agent_openai_end(AgentOpenAI *oa, JsonbParseState **ps);

/*
 * A translation that hands its chunks to out, in out's memory context.
 */
AgentOpenAI *
agent_openai_create(AgentCompact *out)
{
	AgentOpenAI *oa = MemoryContextAllocZero(out->cxt, sizeof(AgentOpenAI));

	oa->out = out;
	return oa;
}

/*
 * Translate one chat.completion.chunk.  The first one starts the message
 * (messageId = its id); choice 0 carries the deltas and the finish reason
 * (other choices, n > 1, are ignored); usage becomes metadata.usage; an
 * "error" member is the agent's error.  Steps (start-step, finish-step)
 * are not made up: the message gets no step-start part.
 */
void
agent_openai_object(AgentOpenAI *oa, Jsonb *obj)
{
	JsonbValue	buf;
	JsonbValue *v;

	v = agent_json_get(&obj->root, "error", &buf);
	if (v != NULL && v->type != jbvNull)
	{
		agent_openai_error(oa, v);
		return;
	}

	if (!oa->started)
	{
		JsonbParseState *ps = NULL;

		oa->started = true;
		agent_openai_begin(&ps, "start");
		v = agent_json_get(&obj->root, "id", &buf);
		if (v != NULL && v->type == jbvString)
		{
			agent_json_push_key(&ps, "messageId");
			pushJsonbValue(&ps, WJB_VALUE, v);
		}
		agent_openai_end(oa, &ps);
	}

	v = agent_json_get(&obj->root, "choices", &buf);
	if (v != NULL && v->type == jbvBinary &&
		JsonContainerIsArray(v->val.binary.data) &&
		JsonContainerSize(v->val.binary.data) > 0)
	{
		JsonbValue *choice = getIthJsonbValueFromContainer(v->val.binary.data, 0);

		if (agent_json_is_object(choice))
			agent_openai_choice(oa, choice->val.binary.data);
	}

	v = agent_json_get(&obj->root, "usage", &buf);
	if (oa->out->failure == NULL && v != NULL && agent_json_is_object(v))
	{
		JsonbParseState *ps = NULL;

		agent_openai_begin(&ps, "message-metadata");
		agent_json_push_key(&ps, "messageMetadata");
		pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
		agent_json_push_key(&ps, "usage");
		pushJsonbValue(&ps, WJB_VALUE, v);
		pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
		agent_openai_end(oa, &ps);
	}
}

/*
 * Choice 0 of a chat.completion.chunk: reasoning (reasoning_content, or
 * reasoning as some servers call it), content, tool_calls, finish_reason.
 */
static void
agent_openai_choice(AgentOpenAI *oa, JsonbContainer *choice)
{
	JsonbValue	buf;
	JsonbValue	dbuf;
	JsonbValue *delta = agent_json_get(choice, "delta", &dbuf);
	JsonbValue *v;

	if (delta != NULL && agent_json_is_object(delta))
	{
		JsonbContainer *d = delta->val.binary.data;

		v = agent_json_get(d, "reasoning_content", &buf);
		if (v == NULL || v->type != jbvString)
			v = agent_json_get(d, "reasoning", &buf);
		if (v != NULL && v->type == jbvString && v->val.string.len > 0)
			agent_openai_text(oa, true, v);

		v = agent_json_get(d, "content", &buf);
		if (v != NULL && v->type == jbvString && v->val.string.len > 0)
			agent_openai_text(oa, false, v);

		v = agent_json_get(d, "tool_calls", &buf);
		if (v != NULL && v->type == jbvBinary &&
			JsonContainerIsArray(v->val.binary.data))
		{
			int			n = JsonContainerSize(v->val.binary.data);

			for (int i = 0; i < n && oa->out->failure == NULL; i++)
			{
				JsonbValue *call = getIthJsonbValueFromContainer(v->val.binary.data, i);

				if (agent_json_is_object(call))
					agent_openai_tool(oa, call->val.binary.data, i);
			}
		}
	}

	v = agent_json_get(choice, "finish_reason", &buf);
	if (oa->out->failure == NULL && v != NULL && v->type == jbvString)
		agent_openai_finish(oa, v);
}

/*
 * A content (or, if reasoning, a reasoning) delta: one text part for all
 * content, one reasoning part for the reasoning before it.  Content ends
 * the reasoning part; reasoning after content opens a new one.
 */
static void
agent_openai_text(AgentOpenAI *oa, bool reasoning, JsonbValue *delta)
{
	bool	   *open = reasoning ? &oa->reasoning_open : &oa->text_open;
	int		   *n = reasoning ? &oa->reasoning_n : &oa->text_n;
	const char *kind = reasoning ? "reasoning" : "text";

	if (!reasoning && oa->reasoning_open)
		agent_openai_close(oa, true);
	if (!*open)
	{
		*open = true;
		(*n)++;
		agent_openai_text_chunk(oa, kind, "start", *n - 1, NULL);
	}
	agent_openai_text_chunk(oa, kind, "delta", *n - 1, delta);
}

/*
 * End the open text (or reasoning) part, if there is one.
 */
static void
agent_openai_close(AgentOpenAI *oa, bool reasoning)
{
	bool	   *open = reasoning ? &oa->reasoning_open : &oa->text_open;
	int			n = reasoning ? oa->reasoning_n : oa->text_n;

	if (!*open)
		return;
	*open = false;
	agent_openai_text_chunk(oa, reasoning ? "reasoning" : "text", "end",
							n - 1, NULL);
}

/*
 * Deliver the chunk "<kind>-<what>" (kind text or reasoning, what start,
 * delta or end) for the part "<kind>-<partno>", with delta if not NULL.
 */
static void
agent_openai_text_chunk(AgentOpenAI *oa, const char *kind, const char *what,
						int partno, JsonbValue *delta)
{
	JsonbParseState *ps = NULL;
	char		id[32];
	char		type[32];

	snprintf(id, sizeof(id), "%s-%d", kind, partno);
	snprintf(type, sizeof(type), "%s-%s", kind, what);
	agent_openai_begin(&ps, type);
	agent_json_push_kv(&ps, "id", id);
	if (delta != NULL)
	{
		agent_json_push_key(&ps, "delta");
		pushJsonbValue(&ps, WJB_VALUE, delta);
	}
	agent_openai_end(oa, &ps);
}

/*
 * One element of delta.tool_calls, by its index (or its position, if it
 * has none): the first one of an index starts the tool call, and every
 * function.arguments piece is an input delta.
 */
static void
agent_openai_tool(AgentOpenAI *oa, JsonbContainer *call, int position)
{
	JsonbParseState *ps = NULL;
	JsonbValue	buf;
	JsonbValue	fbuf;
	JsonbValue *v;
	JsonbValue *fn;
	AgentOpenAITool *tool = NULL;
	int			index = position;

	v = agent_json_get(call, "index", &buf);
	if (v != NULL && v->type != jbvNull)
	{
		char	   *s = NULL;
		char	   *end;
		long		l = -1;

		if (v->type == jbvNumeric)
		{
			s = DatumGetCString(DirectFunctionCall1(numeric_out,
													NumericGetDatum(v->val.numeric)));
			errno = 0;
			l = strtol(s, &end, 10);
			if (errno != 0 || *end != '\0')
				l = -1;
		}
		if (l < 0 || l > PG_INT32_MAX)
		{
			agent_compact_fail(oa->out,
							   psprintf("tool call %d of chunk %d of the reply has an \"index\" that is not a non-negative integer",
										position + 1, oa->out->nread));
			return;
		}
		index = (int) l;
	}
	fn = agent_json_get(call, "function", &fbuf);
	if (fn != NULL && !agent_json_is_object(fn))
		fn = NULL;

	/* deltas of one call come together: look from the newest */
	for (int i = oa->ntools - 1; i >= 0; i--)
		if (oa->tools[i].index == index)
		{
			tool = &oa->tools[i];
			break;
		}
	if (tool == NULL)
		tool = agent_openai_new_tool(oa, call, fn, index);

	v = fn ? agent_json_get(fn->val.binary.data, "arguments", &buf) : NULL;
	if (v != NULL && v->type == jbvString && v->val.string.len > 0)
	{
		appendBinaryStringInfo(&tool->args, v->val.string.val,
							   v->val.string.len);
		agent_openai_begin(&ps, "tool-input-delta");
		agent_json_push_kv(&ps, "toolCallId", tool->id);
		agent_json_push_key(&ps, "inputTextDelta");
		pushJsonbValue(&ps, WJB_VALUE, v);
		agent_openai_end(oa, &ps);
	}
}

/*
 * The first element of delta.tool_calls with this index: a new tool call
 * (its id, or "call_<index>"; its function.name, or "unknown"), started
 * with a tool-input-start.
 */
static AgentOpenAITool *
agent_openai_new_tool(AgentOpenAI *oa, JsonbContainer *call, JsonbValue *fn,
					  int index)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(oa->out->cxt);
	JsonbParseState *ps = NULL;
	JsonbValue	buf;
	JsonbValue *v;
	AgentOpenAITool *tool;

	if (oa->ntools == oa->maxtools)
	{
		oa->maxtools = Max(4, oa->maxtools * 2);
		if (oa->tools == NULL)
			oa->tools = palloc(oa->maxtools * sizeof(AgentOpenAITool));
		else
			oa->tools = repalloc(oa->tools,
								 oa->maxtools * sizeof(AgentOpenAITool));
	}
	tool = &oa->tools[oa->ntools++];
	tool->index = index;
	v = agent_json_get(call, "id", &buf);
	if (v != NULL && v->type == jbvString && v->val.string.len > 0)
		tool->id = pnstrdup(v->val.string.val, v->val.string.len);
	else
		tool->id = psprintf("call_%d", index);
	v = fn ? agent_json_get(fn->val.binary.data, "name", &buf) : NULL;
	if (v != NULL && v->type == jbvString && v->val.string.len > 0)
		tool->name = pnstrdup(v->val.string.val, v->val.string.len);
	else
		tool->name = pstrdup("unknown");
	initStringInfo(&tool->args);
	MemoryContextSwitchTo(oldcxt);

	agent_openai_begin(&ps, "tool-input-start");
	agent_json_push_kv(&ps, "toolCallId", tool->id);
	agent_json_push_kv(&ps, "toolName", tool->name);
	agent_openai_end(oa, &ps);
	return tool;
}

/*
 * finish_reason: end the text and reasoning parts, give every tool call
 * its input (the concatenated arguments parsed; blank ones are {}, as the
 * AI SDK's parseToolCall has it; arguments that are not JSON make a
 * tool-input-error with them as rawInput), then finish with the reason in
 * the AI SDK's words.  Only the first finish_reason counts.
 */
static void
agent_openai_finish(AgentOpenAI *oa, JsonbValue *reason)
{
	static const char *const map[][2] = {
		{"stop", "stop"},
		{"length", "length"},
		{"content_filter", "content-filter"},
		{"tool_calls", "tool-calls"},
		{"function_call", "tool-calls"},
	};
	JsonbParseState *ps = NULL;
	const char *mapped = "unknown";

	if (oa->finished)
		return;
	oa->finished = true;
	agent_openai_close(oa, true);
	agent_openai_close(oa, false);

	for (int i = 0; i < oa->ntools && oa->out->failure == NULL; i++)
	{
		AgentOpenAITool *tool = &oa->tools[i];
		Jsonb	   *input;
		char	   *error = NULL;

		if (agent_json_blank(tool->args.data, tool->args.len))
			input = agent_json_parse("{}", 2, &error);
		else
			input = agent_json_parse(tool->args.data, tool->args.len, &error);

		agent_openai_begin(&ps, input ? "tool-input-available" : "tool-input-error");
		agent_json_push_kv(&ps, "toolCallId", tool->id);
		agent_json_push_kv(&ps, "toolName", tool->name);
		agent_json_push_key(&ps, "input");
		if (input != NULL)
			agent_json_push_jsonb(&ps, WJB_VALUE, input);
		else
		{
			agent_json_push_string(&ps, WJB_VALUE, tool->args.data,
								   tool->args.len);
			agent_json_push_kv(&ps, "errorText",
							   psprintf("the arguments of tool call \"%s\" are not valid JSON: %s",
										tool->id, error));
		}
		agent_openai_end(oa, &ps);
	}

	for (int i = 0; i < lengthof(map); i++)
		if (strlen(map[i][0]) == reason->val.string.len &&
			memcmp(map[i][0], reason->val.string.val, reason->val.string.len) == 0)
			mapped = map[i][1];
	agent_openai_begin(&ps, "finish");
	agent_json_push_kv(&ps, "finishReason", mapped);
	agent_openai_end(oa, &ps);
}

/*
 * A chunk with an "error" member: an error chunk whose errorText is the
 * error's message (or the error itself, if it is a string, or its JSON
 * text).
 */
static void
agent_openai_error(AgentOpenAI *oa, JsonbValue *error)
{
	JsonbParseState *ps = NULL;
	JsonbValue	buf;
	JsonbValue *m = NULL;

	agent_openai_begin(&ps, "error");
	agent_json_push_key(&ps, "errorText");
	if (agent_json_is_object(error))
		m = agent_json_get(error->val.binary.data, "message", &buf);
	if (error->type == jbvString)
		pushJsonbValue(&ps, WJB_VALUE, error);
	else if (m != NULL && m->type == jbvString)
		pushJsonbValue(&ps, WJB_VALUE, m);
	else
	{
		Jsonb	   *jb = JsonbValueToJsonb(error);
		char	   *s = JsonbToCString(NULL, &jb->root, VARSIZE(jb));

		agent_json_push_string(&ps, WJB_VALUE, s, strlen(s));
	}
	agent_openai_end(oa, &ps);
}

/*
 * Start building a chunk of the given type.
 */
static void
agent_openai_begin(JsonbParseState **ps, const char *type)
{
	pushJsonbValue(ps, WJB_BEGIN_OBJECT, NULL);
	agent_json_push_kv(ps, "type", type);
}

/*
 * Finish building a chunk and deliver it, as if the agent had sent it.
 */
static void
agent_openai_end(AgentOpenAI *oa, JsonbParseState **ps)
{
	JsonbValue *res = pushJsonbValue(ps, WJB_END_OBJECT, NULL);

	*ps = NULL;
	agent_compact_deliver(oa->out, JsonbValueToJsonb(res));
}

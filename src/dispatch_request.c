/*-------------------------------------------------------------------------
 *
 * dispatch_request.c
 *	  What the dispatcher sends an agent: the request body with the turn's
 *	  exact history, and the headers.
 *
 * The body is built in C (escape_json, JsonbToCString), from the history
 * cache (dispatch_history.c) when it holds the range, else from
 * read_messages, which sees durable messages before they reach the table.
 * Header values may be secrets: they go into libcurl's list and nowhere
 * else (http_header_append wipes its copy).
 *
 * src/dispatch_request.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/tuplestore.h"

#include "dispatch.h"
#include "dispatch_history.h"
#include "dispatch_http.h"
#include "read.h"
#include "secrets.h"

/* a table read for the history cache reads this many past T */
#define DISPATCH_HISTORY_AHEAD	32

/* entire history is capped at what one read returns */
#define DISPATCH_ENTIRE_MAX		100000

static void dispatch_content_text(StringInfo out, Jsonb *content);
static TupleDesc dispatch_messages_desc(void);

/*
 * The text an OpenAI-compatible model sees of a message's content: a JSON
 * string as is, else its "text", else the concatenated text parts of its
 * "parts", else the content's JSON.
 */
static void
dispatch_content_text(StringInfo out, Jsonb *content)
{
	JsonbValue	v;
	JsonbValue *p;

	if (JsonbExtractScalar(&content->root, &v))
	{
		if (v.type == jbvString)
		{
			appendBinaryStringInfo(out, v.val.string.val, v.val.string.len);
			return;
		}
	}
	else if (JB_ROOT_IS_OBJECT(content))
	{
		p = getKeyJsonValueFromContainer(&content->root, "text", 4, &v);
		if (p != NULL && p->type == jbvString)
		{
			appendBinaryStringInfo(out, p->val.string.val, p->val.string.len);
			return;
		}
		p = getKeyJsonValueFromContainer(&content->root, "parts", 5, &v);
		if (p != NULL && p->type == jbvBinary &&
			JsonContainerIsArray(p->val.binary.data))
		{
			JsonbContainer *parts = p->val.binary.data;
			int			n = JsonContainerSize(parts);

			for (int i = 0; i < n; i++)
			{
				JsonbValue *e = getIthJsonbValueFromContainer(parts, i);
				JsonbValue	tv;
				JsonbValue *t;
				JsonbValue *x;

				if (e == NULL || e->type != jbvBinary ||
					!JsonContainerIsObject(e->val.binary.data))
					continue;
				t = getKeyJsonValueFromContainer(e->val.binary.data, "type", 4, &tv);
				if (t == NULL || t->type != jbvString || t->val.string.len != 4 ||
					memcmp(t->val.string.val, "text", 4) != 0)
					continue;
				x = getKeyJsonValueFromContainer(e->val.binary.data, "text", 4, &tv);
				if (x != NULL && x->type == jbvString)
					appendBinaryStringInfo(out, x->val.string.val, x->val.string.len);
			}
			return;
		}
	}
	(void) JsonbToCString(out, &content->root, VARSIZE(content));
}

/*
 * The row type of fleetlm.messages, which read_messages fills.
 */
static TupleDesc
dispatch_messages_desc(void)
{
	static TupleDesc desc = NULL;

	if (desc == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		desc = CreateTupleDescCopy(RelationNameGetTupleDesc("fleetlm.messages"));
		MemoryContextSwitchTo(old);
	}
	return desc;
}

/*
 * The request body of a turn: its exact history, as the agent's protocol
 * wants it, read through read_messages (durable messages, from the ring
 * before they reach the table).  Palloc'd in the round's context.
 */
char *
dispatch_request_body(DispatchTurn *t, DispatchAgent *a, int64 turn, int attempt)
{
	TupleDesc	desc = dispatch_messages_desc();
	Tuplestorestate *store;
	TupleTableSlot *slot;
	StringInfoData buf;
	int64		after;
	int32		count;
	bool		first = true;
	bool		openai = (a->protocol == AGENT_STREAM_OPENAI);
	bool		cached = false;
	StringInfoData frag;

	switch (a->history_mode)
	{
		case 'l':
			after = turn - 1;
			count = 1;
			break;
		case 'e':
			count = (int32) Min(turn, DISPATCH_ENTIRE_MAX);
			after = turn - count;
			break;
		default:
			count = (int32) Min(turn, (int64) a->history_limit);
			after = turn - count;
			break;
	}

	initStringInfo(&buf);
	if (openai)
	{
		appendStringInfoString(&buf, "{\"model\": ");
		if (a->model)
			escape_json(&buf, a->model);
		else
			appendStringInfoString(&buf, "null");
		appendStringInfoString(&buf, ", \"stream\": true, \"messages\": [");
	}
	else
	{
		appendStringInfoString(&buf, "{\"session_id\": ");
		escape_json(&buf, t->session_id);
		appendStringInfoString(&buf, ", \"agent_id\": ");
		escape_json(&buf, t->agent_id);
		appendStringInfoString(&buf, ", \"user_id\": ");
		escape_json(&buf, t->user_id);
		appendStringInfo(&buf, ", \"turn\": " INT64_FORMAT ", \"attempt\": %d, \"messages\": [",
						 turn, attempt);
		/* tail: from the cache if it holds the range (dispatch_history.c) */
		cached = (a->history_mode == 't');
		if (cached && history_build(t->session_id, after + 1, turn, &buf))
		{
			appendStringInfoString(&buf, "]}");
			return buf.data;
		}
		if (cached)
		{
			/* read a little past T too: the tail may be there already */
			history_begin(t->session_id, a->history_limit, after + 1);
			count += DISPATCH_HISTORY_AHEAD;
			initStringInfo(&frag);
		}
	}

	store = tuplestore_begin_heap(false, false, work_mem);
	(void) read_messages(t->session_id, after, count, store, desc);
	slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);

	while (tuplestore_gettupleslot(store, true, false, slot))
	{
		bool		isnull;
		int64		seq = DatumGetInt64(slot_getattr(slot, 2, &isnull));
		char	   *sender = TextDatumGetCString(slot_getattr(slot, 3, &isnull));
		char	   *kind = TextDatumGetCString(slot_getattr(slot, 5, &isnull));
		Jsonb	   *content = DatumGetJsonbP(slot_getattr(slot, 6, &isnull));

		if (cached)
		{
			Jsonb	   *metadata = DatumGetJsonbP(slot_getattr(slot, 7, &isnull));
			TimestampTz at = DatumGetTimestampTz(slot_getattr(slot, 8, &isnull));

			resetStringInfo(&frag);
			history_render(&frag, seq, sender, kind, content, metadata, at);
			history_add(t->session_id, seq, frag.data, frag.len);
			if (seq <= turn)
			{
				if (!first)
					appendStringInfoString(&buf, ", ");
				appendBinaryStringInfo(&buf, frag.data, frag.len);
				first = false;
			}
			ExecClearTuple(slot);
			continue;
		}
		if (seq > turn)
			break;
		if (openai)
		{
			const char *role;

			if (strcmp(kind, "agent_error") == 0)
				continue;
			if (strcmp(sender, t->user_id) == 0)
				role = "user";
			else if (strcmp(kind, "system") == 0)
				role = "system";
			else if (strcmp(sender, t->agent_id) == 0)
				role = "assistant";
			else
				role = "user";
			if (!first)
				appendStringInfoString(&buf, ", ");
			appendStringInfo(&buf, "{\"role\": \"%s\", \"content\": ", role);
			{
				StringInfoData text;

				initStringInfo(&text);
				dispatch_content_text(&text, content);
				escape_json(&buf, text.data);
				pfree(text.data);
			}
			appendStringInfoChar(&buf, '}');
		}
		else
		{
			Jsonb	   *metadata = DatumGetJsonbP(slot_getattr(slot, 7, &isnull));
			TimestampTz at = DatumGetTimestampTz(slot_getattr(slot, 8, &isnull));

			if (!first)
				appendStringInfoString(&buf, ", ");
			history_render(&buf, seq, sender, kind, content, metadata, at);
		}
		first = false;
		ExecClearTuple(slot);
	}
	appendStringInfoString(&buf, "]}");
	ExecDropSingleTupleTableSlot(slot);
	tuplestore_end(store);
	return buf.data;
}

/*
 * The headers of a call: ours, the agent's, and its secret ones.  NULL
 * with the reason in error (and whether a retry may help) if a secret is
 * not defined or libcurl runs out of memory.
 */
struct curl_slist *
dispatch_request_headers(DispatchTurn *t, DispatchAgent *a, int64 turn,
						 char *error, size_t errlen, bool *retryable)
{
	struct curl_slist *headers = NULL;
	char		idem[FLEETLM_ID_MAXLEN + 32];
	bool		ok = true;

	headers = http_header_append(headers, "Content-Type", "application/json", &ok);
	if (!a->has_accept)
		headers = http_header_append(headers, "Accept",
									 "application/x-ndjson, text/event-stream", &ok);
	snprintf(idem, sizeof(idem), "%s:" INT64_FORMAT, t->session_id, turn);
	headers = http_header_append(headers, "Idempotency-Key", idem, &ok);
	headers = http_header_append(headers, "Expect", "", &ok);
	for (int i = 0; i < a->nheaders; i++)
	{
		struct curl_slist *n = curl_slist_append(headers, a->header_lines[i]);

		if (n == NULL)
			ok = false;
		else
			headers = n;
	}
	for (int i = 0; i < a->nsecrets; i++)
	{
		const char *value = secrets_get(a->secret_name[i]);

		if (value == NULL)
		{
			curl_slist_free_all(headers);
			snprintf(error, errlen,
					 "secret \"%s\" (header \"%s\") is not defined in fleetlm.agent_secrets_file",
					 a->secret_name[i], a->secret_header[i]);
			*retryable = false;
			return NULL;
		}
		headers = http_header_append(headers, a->secret_header[i], value, &ok);
	}
	if (!ok)
	{
		curl_slist_free_all(headers);
		snprintf(error, errlen, "out of memory building the request headers");
		*retryable = true;
		return NULL;
	}
	return headers;
}

/*-------------------------------------------------------------------------
 *
 * agent_stream.c
 *	  The agent engine's reply-stream parser and compactor: the bytes of an
 *	  agent's streamed reply in, UI-message-stream chunks and one compacted
 *	  assistant message out.
 *
 * Two steps, because the bytes arrive in a libcurl write callback, where no
 * PostgreSQL error may be raised (it would longjmp through libcurl's
 * frames) and nothing should be allocated:
 *
 *	- agent_stream_feed only copies bytes into a buffer allocated when the
 *	  stream was created, checking the caps as it goes.  It never
 *	  allocates and never raises an error; a full buffer or an exceeded cap
 *	  is a status.  The buffer holds max_line + 1 bytes (the longest
 *	  incomplete line and the CR of its CRLF) plus feed_reserve, so after a
 *	  process any feed of at most feed_reserve bytes fits.  A FULL feed
 *	  takes nothing, which is what libcurl's CURL_WRITEFUNC_PAUSE needs:
 *	  libcurl hands the same bytes again once the transfer is unpaused.
 *	- agent_stream_process, called outside callbacks, cuts the buffered
 *	  bytes into lines, the lines into JSON objects (the framing), the
 *	  objects into chunks (the protocol), and compacts the chunks into the
 *	  message.  It allocates, and it lets errors that are not about the
 *	  input (out of memory, a cancel) propagate; everything wrong with the
 *	  input is a status with a message, never an error.
 *
 * Framing.  Lines end with LF or CRLF.  The first non-blank line decides:
 * SSE if it starts with "data:", ":", "event:", "id:" or "retry:" (the last
 * two are SSE fields too, and no JSON line starts with them), else JSONL,
 * one JSON object per non-blank line.  In SSE, the "data:" lines of an
 * event (one space after the colon dropped) are joined with LF, a blank
 * line ends the event, comment lines (":...") and the other fields
 * ("event:", "id:", "retry:", unknown ones) are ignored, and an event
 * "[DONE]" ends the reply.  Both protocols accept both framings.
 *
 * Protocols.  fleetlm: each object is an AI SDK UI-message-stream chunk,
 * compacted as the AI SDK's processUIMessageStream does (version 5, as far
 * as we know it; agent_stream_compact lists where we differ).  openai: each
 * object is a chat.completion.chunk, translated into the UI-message-stream
 * chunks that say the same thing (start, text-*, reasoning-*, tool-input-*,
 * finish, message-metadata for usage, error), which are then compacted the
 * same way.  So callers, and the clients of wait_for_stream, see one kind
 * of chunk whatever the agent speaks.
 *
 * The end.  agent_stream_finish processes what is left.  An incomplete last
 * line or SSE event is used if it parses, and else dropped as a truncation
 * (result.truncated) rather than reported as malformed: a connection cut in
 * the middle of a chunk is a reason to retry, not a broken agent.
 *
 * JSON.  A chunk is parsed with jsonb_in.  Its syntax errors, and the few
 * other data errors it raises (a number out of range, \u0000, nesting
 * deeper than the stack allows), are caught and become a MALFORMED status.
 * They are caught without a subtransaction, which is safe because jsonb_in
 * only computes: it takes no lock, pins no buffer, opens no file, and what
 * it allocated lives in the per-chunk context, reset after each chunk.
 * Any other error is thrown on.
 *
 * Memory.  Everything lives in the stream's own context, a child of the
 * context current at create; destroy deletes it.  The work on one JSON
 * object happens in a child context that is reset after it.
 *
 * src/agent_stream.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "agent_stream.h"

/* How the reply is cut into JSON objects */
typedef enum AgentStreamFraming
{
	AGENT_STREAM_FRAMING_UNKNOWN,	/* no non-blank line yet */
	AGENT_STREAM_FRAMING_JSONL,
	AGENT_STREAM_FRAMING_SSE
} AgentStreamFraming;

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

/* One tool call of an openai reply */
typedef struct AgentOpenAITool
{
	int			index;			/* tool_calls[].index */
	char	   *id;
	char	   *name;
	StringInfoData args;		/* function.arguments, concatenated */
} AgentOpenAITool;

struct AgentStream
{
	MemoryContext cxt;			/* everything of the stream */
	MemoryContext chunk_cxt;	/* the work on one JSON object */
	MemoryContext caller_cxt;	/* current at process: callbacks run in it */
	AgentStreamProtocol protocol;
	int			max_line;
	int64		max_bytes;
	AgentStreamChunkCallback callback;
	void	   *callback_arg;

	/* written by feed, so nothing here may need an allocation */
	char	   *buf;			/* bytes taken and not processed yet */
	size_t		cap;
	size_t		len;
	int64		bytes;			/* bytes taken in all */
	size_t		line_len;		/* bytes of the incomplete last line */
	int64		lines_fed;		/* complete lines taken */
	AgentStreamStatus feed_status;	/* a cap that feed found exceeded */
	int64		bad_line;		/* the line over max_line */

	/* process */
	AgentStreamStatus status;
	char	   *failure;		/* the failure's message */
	int64		line_no;		/* lines processed */
	AgentStreamFraming framing;
	StringInfoData event;		/* SSE: the data of the current event */
	bool		event_has_data;
	int			nread;			/* JSON objects read */
	bool		at_eof;			/* finish: the incomplete last line or event */
	bool		truncated;
	const char *cur_type;		/* type of the chunk being compacted */

	/* the message */
	char	   *message_id;
	Jsonb	   *metadata;
	AgentPart **parts;
	int			nparts;
	int			maxparts;
	int			step_first;		/* first part since the last finish-step */
	int		   *buckets;		/* part index: chain heads, -1 = empty */
	int			nbuckets;		/* a power of 2 */
	int			nindexed;
	int			chunks;
	bool		complete;
	bool		aborted;
	bool		done_marker;
	char	   *agent_error;
	char	   *finish_reason;

	/* protocol openai */
	bool		oa_started;
	bool		oa_finished;
	bool		oa_text_open;
	bool		oa_reasoning_open;
	int			oa_text_n;		/* text parts opened so far */
	int			oa_reasoning_n; /* reasoning parts opened so far */
	AgentOpenAITool *oa_tools;
	int			oa_ntools;
	int			oa_maxtools;
};

/* fleetlm.compact_agent_reply feeds slices of these sizes, in turn */
static const int agent_stream_slices[] = {1, 2, 3, 7, 13, 31, 64};

/* ... with this feed_reserve (the largest slice), processing this often */
#define AGENT_STREAM_SQL_RESERVE		64
#define AGENT_STREAM_SQL_PROCESS_EVERY	11

/* Longest agent-provided string quoted in a failure message, in bytes */
#define AGENT_STREAM_QUOTE_MAX	100

PG_FUNCTION_INFO_V1(fleetlm_compact_agent_reply);

/* framing */
static void agent_stream_process_lines(AgentStream *as);
static void agent_stream_line(AgentStream *as, const char *line, size_t len);
static bool agent_stream_blank(const char *s, size_t len);
static bool agent_stream_sse_start(const char *line, size_t len);
static void agent_stream_dispatch(AgentStream *as);
static void agent_stream_object(AgentStream *as, const char *text, size_t len);
static Jsonb *agent_stream_parse(const char *text, size_t len, char **error);
static void agent_stream_fail(AgentStream *as, AgentStreamStatus status,
							  const char *fmt,...) pg_attribute_printf(3, 4);
static char *agent_stream_quote(const char *s, int len);

/* chunks */
static void agent_stream_deliver(AgentStream *as, Jsonb *chunk);
static void agent_stream_compact(AgentStream *as, Jsonb *chunk);
static JsonbValue *agent_stream_get(JsonbContainer *obj, const char *key,
									JsonbValue *buf);
static bool agent_stream_string(AgentStream *as, Jsonb *chunk,
								const char *key, bool required,
								JsonbValue *out);
static bool agent_stream_bool(AgentStream *as, Jsonb *chunk, const char *key,
							  int *out);
static Jsonb *agent_stream_value(AgentStream *as, Jsonb *chunk,
								 const char *key, bool null_is_absent);
static Jsonb *agent_stream_keep(AgentStream *as, Jsonb *jb);
static char *agent_stream_strdup(AgentStream *as, JsonbValue *v);
static bool agent_stream_is_object(JsonbValue *v);

/* compaction */
static AgentPart *agent_stream_new_part(AgentStream *as, AgentPartKind kind,
										JsonbValue *id);
static int	agent_stream_part_ns(AgentPart *p);
static uint32 agent_stream_hash(int ns, const char *type, const char *id,
								int id_len);
static void agent_stream_index_add(AgentStream *as, int partno);
static void agent_stream_index_build(AgentStream *as, int nbuckets);
static AgentPart *agent_stream_find(AgentStream *as, int ns, const char *type,
									const char *id, int id_len);
static void agent_stream_text_start(AgentStream *as, Jsonb *chunk,
									AgentPartKind kind);
static void agent_stream_text_delta(AgentStream *as, Jsonb *chunk,
									AgentPartKind kind, bool end);
static AgentPart *agent_stream_tool_part(AgentStream *as, JsonbValue *call_id,
										 JsonbValue *name, int dynamic);
static AgentPart *agent_stream_tool_known(AgentStream *as, JsonbValue *call_id,
										  bool streamed);
static void agent_stream_tool_update(AgentPart *p, const char *state,
									 Jsonb *input, Jsonb *output,
									 Jsonb *raw_input, char *error_text,
									 int preliminary, int provider_executed,
									 Jsonb *provider_metadata);
static Jsonb *agent_stream_tool_input(AgentStream *as, AgentPart *p);
static void agent_stream_tool_chunk(AgentStream *as, Jsonb *chunk,
									const char *type);
static void agent_stream_fixed(AgentStream *as, Jsonb *chunk,
							   const char *const *required,
							   const char *const *optional);
static void agent_stream_data(AgentStream *as, Jsonb *chunk, const char *type);
static void agent_stream_merge_metadata(AgentStream *as, Jsonb *meta);
static JsonbValue *agent_stream_merge(JsonbParseState **ps,
									  JsonbContainer *base,
									  JsonbContainer *over);

/* building jsonb */
static void agent_stream_push_key(JsonbParseState **ps, const char *key);
static void agent_stream_push_string(JsonbParseState **ps,
									 JsonbIteratorToken tok,
									 const char *s, int len);
static void agent_stream_push_kv(JsonbParseState **ps, const char *key,
								 const char *value);
static void agent_stream_push_jsonb(JsonbParseState **ps,
									JsonbIteratorToken tok, Jsonb *jb);
static void agent_stream_push_part(AgentStream *as, JsonbParseState **ps,
								   AgentPart *p);

/* protocol openai */
static void agent_stream_openai(AgentStream *as, Jsonb *obj);
static void agent_stream_openai_choice(AgentStream *as, JsonbContainer *choice);
static void agent_stream_openai_text(AgentStream *as, bool reasoning,
									 JsonbValue *delta);
static void agent_stream_openai_close(AgentStream *as, bool reasoning);
static void agent_stream_openai_tool(AgentStream *as, JsonbContainer *call,
									 int position);
static void agent_stream_openai_finish(AgentStream *as, JsonbValue *reason);
static void agent_stream_openai_error(AgentStream *as, JsonbValue *error);
static void agent_stream_emit_begin(JsonbParseState **ps, const char *type);
static void agent_stream_emit_end(AgentStream *as, JsonbParseState **ps);


/* ------------------------------------------------------------------------
 * The stream
 * ------------------------------------------------------------------------
 */

/*
 * The protocol named name (agents.protocol); an unknown name is an error
 * naming it.
 */
AgentStreamProtocol
agent_stream_protocol(const char *name)
{
	if (strcmp(name, "fleetlm") == 0)
		return AGENT_STREAM_FLEETLM;
	if (strcmp(name, "openai") == 0)
		return AGENT_STREAM_OPENAI;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown agent protocol: \"%s\"", name),
			 errhint("The protocols are \"fleetlm\" and \"openai\".")));
	return AGENT_STREAM_FLEETLM;	/* keep the compiler quiet */
}

/*
 * A new stream, in a memory context of its own under the current one.
 *
 * max_line caps one line (without its LF or CRLF), max_bytes the whole
 * reply.  feed_reserve is the most bytes one feed will be asked to take:
 * at least libcurl's CURLOPT_BUFFERSIZE (CURL_MAX_WRITE_SIZE, 16 kB, by
 * default).  The input buffer, max_line + 1 + feed_reserve bytes, is
 * allocated here, so that feed never has to; pages of it that are never
 * written cost no memory.  callback, if not NULL, gets each chunk as it is
 * compacted.
 */
AgentStream *
agent_stream_create(AgentStreamProtocol protocol, int max_line,
					int64 max_bytes, int feed_reserve,
					AgentStreamChunkCallback callback, void *callback_arg)
{
	MemoryContext cxt;
	MemoryContext oldcxt;
	AgentStream *as;

	if (max_line < 1 || max_line > AGENT_STREAM_MAX_LINE_LIMIT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_line must be between 1 and %d: %d",
						AGENT_STREAM_MAX_LINE_LIMIT, max_line)));
	if (max_bytes < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_bytes must be positive: " INT64_FORMAT,
						max_bytes)));
	if (feed_reserve < 1 || feed_reserve > AGENT_STREAM_MAX_RESERVE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("feed_reserve must be between 1 and %d: %d",
						AGENT_STREAM_MAX_RESERVE, feed_reserve)));

	cxt = AllocSetContextCreate(CurrentMemoryContext, "fleetlm agent stream",
								ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(cxt);
	as = palloc0(sizeof(AgentStream));
	as->cxt = cxt;
	as->chunk_cxt = AllocSetContextCreate(cxt, "fleetlm agent stream chunk",
										  ALLOCSET_DEFAULT_SIZES);
	as->protocol = protocol;
	as->max_line = max_line;
	as->max_bytes = max_bytes;
	as->callback = callback;
	as->callback_arg = callback_arg;
	as->cap = (size_t) max_line + 1 + feed_reserve;
	as->buf = palloc(as->cap);
	as->feed_status = AGENT_STREAM_OK;
	as->status = AGENT_STREAM_OK;
	as->framing = AGENT_STREAM_FRAMING_UNKNOWN;
	initStringInfo(&as->event);
	as->maxparts = 16;
	as->parts = palloc(as->maxparts * sizeof(AgentPart *));
	as->nbuckets = 64;
	as->buckets = palloc(as->nbuckets * sizeof(int));
	memset(as->buckets, -1, as->nbuckets * sizeof(int));
	MemoryContextSwitchTo(oldcxt);
	return as;
}

/*
 * Take len bytes of the reply.  Safe in a libcurl write callback: it only
 * reads and writes the stream's fields and its preallocated buffer, and
 * raises no error.
 *
 * Returns OK when it took all of them.  FULL: there is no room until the
 * next process, and nothing was taken (from libcurl: return
 * CURL_WRITEFUNC_PAUSE, process, then curl_easy_pause(CURLPAUSE_CONT)).
 * TOO_LARGE: the reply would exceed max_bytes; nothing was taken.
 * LINE_TOO_LONG: a line exceeds max_line; the bytes before that line were
 * taken.  After either, and after process found the end or a failure,
 * every feed returns that status and takes nothing (from libcurl: return
 * 0, which ends the transfer); process then reports it, with its message,
 * once it has processed the lines before it.
 */
AgentStreamStatus
agent_stream_feed(AgentStream *as, const char *data, size_t len)
{
	const char *p = data;
	const char *end = data + len;
	size_t		line_len = as->line_len;
	size_t		take = len;

	if (as->status != AGENT_STREAM_OK)
		return as->status;
	if (as->feed_status != AGENT_STREAM_OK)
		return as->feed_status;
	if (len > (uint64) (as->max_bytes - as->bytes))
	{
		as->feed_status = AGENT_STREAM_TOO_LARGE;
		return as->feed_status;
	}
	if (len > as->cap - as->len)
		return AGENT_STREAM_FULL;

	/* check the length of every line the bytes end or extend */
	while (p < end)
	{
		const char *nl = memchr(p, '\n', end - p);

		if (nl != NULL)
		{
			size_t		content = line_len + (nl - p);
			bool		cr;

			/* a CR before the LF is not content */
			if (nl > p)
				cr = nl[-1] == '\r';
			else
				cr = line_len > 0 && as->buf[as->len - 1] == '\r';
			if (cr)
				content--;
			if (content > (size_t) as->max_line)
			{
				take = p - data;
				as->feed_status = AGENT_STREAM_LINE_TOO_LONG;
				as->bad_line = as->lines_fed + 1;
				break;
			}
			as->lines_fed++;
			line_len = 0;
			p = nl + 1;
		}
		else
		{
			/* an incomplete line may hold one byte more: the CR of a CRLF */
			line_len += end - p;
			if (line_len > (size_t) as->max_line &&
				!(line_len == (size_t) as->max_line + 1 && end[-1] == '\r'))
			{
				take = p - data;
				as->feed_status = AGENT_STREAM_LINE_TOO_LONG;
				as->bad_line = as->lines_fed + 1;
			}
			p = end;
		}
	}

	memcpy(as->buf + as->len, data, take);
	as->len += take;
	as->bytes += take;
	as->line_len = line_len;
	return as->feed_status;
}

/*
 * Process the complete lines taken so far: compact their chunks, hand
 * them to the callback.  Not in a libcurl callback: this allocates and may
 * raise errors that are not about the input.  Returns OK, ENDED (a [DONE]
 * was read) or the failure.
 */
AgentStreamStatus
agent_stream_process(AgentStream *as)
{
	as->caller_cxt = CurrentMemoryContext;
	agent_stream_process_lines(as);
	return as->status;
}

/*
 * The reply is over (the transfer ended, however): process what is left,
 * including an incomplete last line or event, which is used if it parses
 * and else dropped as a truncation.  Returns ENDED or the failure.
 */
AgentStreamStatus
agent_stream_finish(AgentStream *as)
{
	as->caller_cxt = CurrentMemoryContext;
	agent_stream_process_lines(as);
	if (as->status != AGENT_STREAM_OK)
		return as->status;

	as->at_eof = true;
	if (as->len > 0)
	{
		size_t		len = as->len;

		if (as->buf[len - 1] == '\r')
			len--;
		agent_stream_line(as, as->buf, len);
		as->len = 0;
	}
	if (as->status == AGENT_STREAM_OK &&
		as->framing == AGENT_STREAM_FRAMING_SSE)
		agent_stream_dispatch(as);
	if (as->status == AGENT_STREAM_OK)
		as->status = AGENT_STREAM_ENDED;
	return as->status;
}

/*
 * What the reply amounted to so far.  The strings belong to the stream.
 */
void
agent_stream_result(AgentStream *as, AgentStreamResult *result)
{
	result->status = as->status;
	result->complete = as->complete;
	result->aborted = as->aborted;
	result->done_marker = as->done_marker;
	result->truncated = as->truncated;
	result->error = as->failure ? as->failure : as->agent_error;
	result->agent_error = as->agent_error;
	result->finish_reason = as->finish_reason;
	result->chunks = as->chunks;
	result->bytes = as->bytes;
}

/*
 * The compacted message, {"id", "role": "assistant", "metadata"?,
 * "parts"}, in the current memory context.  The id is start's messageId,
 * or else fallback_id.  It can be built at any time, also after a failure
 * (it then holds what came before).
 */
Jsonb *
agent_stream_message(AgentStream *as, const char *fallback_id)
{
	JsonbParseState *ps = NULL;
	JsonbValue *res;
	const char *id = as->message_id ? as->message_id : fallback_id;

	if (id == NULL)
		elog(ERROR, "agent_stream_message needs a fallback_id");

	pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	agent_stream_push_kv(&ps, "id", id);
	agent_stream_push_kv(&ps, "role", "assistant");
	if (as->metadata != NULL)
	{
		agent_stream_push_key(&ps, "metadata");
		agent_stream_push_jsonb(&ps, WJB_VALUE, as->metadata);
	}
	agent_stream_push_key(&ps, "parts");
	pushJsonbValue(&ps, WJB_BEGIN_ARRAY, NULL);
	for (int i = 0; i < as->nparts; i++)
		agent_stream_push_part(as, &ps, as->parts[i]);
	pushJsonbValue(&ps, WJB_END_ARRAY, NULL);
	res = pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(res);
}

/*
 * Free the stream and everything it holds.
 */
void
agent_stream_destroy(AgentStream *as)
{
	MemoryContextDelete(as->cxt);
}


/* ------------------------------------------------------------------------
 * Framing: bytes to lines to JSON objects
 * ------------------------------------------------------------------------
 */

/*
 * Process every complete line in the buffer, then keep the incomplete
 * last one at its front.  A cap that feed found exceeded becomes the
 * failure once the lines before it are processed, unless the reply ended
 * before it.
 */
static void
agent_stream_process_lines(AgentStream *as)
{
	size_t		pos = 0;

	while (as->status == AGENT_STREAM_OK)
	{
		char	   *line = as->buf + pos;
		char	   *nl = memchr(line, '\n', as->len - pos);
		size_t		len;

		if (nl == NULL)
			break;
		len = nl - line;
		pos += len + 1;
		if (len > 0 && line[len - 1] == '\r')
			len--;
		agent_stream_line(as, line, len);
	}
	if (pos > 0)
	{
		memmove(as->buf, as->buf + pos, as->len - pos);
		as->len -= pos;
	}

	if (as->status != AGENT_STREAM_OK)
		return;
	if (as->feed_status == AGENT_STREAM_LINE_TOO_LONG)
		agent_stream_fail(as, AGENT_STREAM_LINE_TOO_LONG,
						  "line " INT64_FORMAT " of the reply is longer than max_line (%d bytes)",
						  as->bad_line, as->max_line);
	else if (as->feed_status == AGENT_STREAM_TOO_LARGE)
		agent_stream_fail(as, AGENT_STREAM_TOO_LARGE,
						  "the reply is larger than max_bytes (" INT64_FORMAT " bytes)",
						  as->max_bytes);
}

/*
 * One line, without its LF or CRLF: decide the framing on the first
 * non-blank one, then read a JSONL object or an SSE field.
 */
static void
agent_stream_line(AgentStream *as, const char *line, size_t len)
{
	as->line_no++;

	/* a byte order mark at the start is not content */
	if (as->line_no == 1 && len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0)
	{
		line += 3;
		len -= 3;
	}
	if (!pg_verify_mbstr(PG_UTF8, line, (int) len, true))
	{
		if (as->at_eof)
			as->truncated = true;	/* cut inside a UTF-8 sequence */
		else
			agent_stream_fail(as, AGENT_STREAM_MALFORMED,
							  "line " INT64_FORMAT " of the reply is not valid UTF-8",
							  as->line_no);
		return;
	}

	if (as->framing == AGENT_STREAM_FRAMING_UNKNOWN)
	{
		if (agent_stream_blank(line, len))
			return;
		as->framing = agent_stream_sse_start(line, len) ?
			AGENT_STREAM_FRAMING_SSE : AGENT_STREAM_FRAMING_JSONL;
	}

	if (as->framing == AGENT_STREAM_FRAMING_JSONL)
	{
		if (!agent_stream_blank(line, len))
			agent_stream_object(as, line, len);
		return;
	}

	/* SSE: a blank line ends the event; ":" starts a comment */
	if (len == 0)
		agent_stream_dispatch(as);
	else if (line[0] != ':')
	{
		const char *colon = memchr(line, ':', len);
		size_t		name_len = colon ? (size_t) (colon - line) : len;

		if (name_len == 4 && memcmp(line, "data", 4) == 0)
		{
			const char *value = colon ? colon + 1 : line + len;
			size_t		value_len = line + len - value;

			if (value_len > 0 && value[0] == ' ')
			{
				value++;
				value_len--;
			}
			if (as->event_has_data)
				appendStringInfoChar(&as->event, '\n');
			appendBinaryStringInfo(&as->event, value, (int) value_len);
			as->event_has_data = true;
		}
		/* event:, id:, retry: and unknown fields do not matter here */
	}
}

/*
 * Whether s holds only blanks (spaces, tabs, CRs).
 */
static bool
agent_stream_blank(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
			return false;
	return true;
}

/*
 * Whether the first non-blank line of a reply makes it SSE.
 */
static bool
agent_stream_sse_start(const char *line, size_t len)
{
	static const char *const fields[] = {"data:", ":", "event:", "id:", "retry:"};

	for (int i = 0; i < lengthof(fields); i++)
	{
		size_t		n = strlen(fields[i]);

		if (len >= n && memcmp(line, fields[i], n) == 0)
			return true;
	}
	return false;
}

/*
 * The SSE event read so far is complete: "[DONE]" ends the reply, blank
 * data is skipped, anything else is a JSON object.
 */
static void
agent_stream_dispatch(AgentStream *as)
{
	const char *data = as->event.data;
	size_t		len = as->event.len;

	if (!as->event_has_data)
		return;
	while (len > 0 && (data[0] == ' ' || data[0] == '\t' || data[0] == '\n'))
	{
		data++;
		len--;
	}
	while (len > 0 && (data[len - 1] == ' ' || data[len - 1] == '\t' ||
					   data[len - 1] == '\n'))
		len--;

	if (len == 6 && memcmp(data, "[DONE]", 6) == 0)
	{
		as->done_marker = true;
		as->status = AGENT_STREAM_ENDED;
	}
	else if (len > 0)
		agent_stream_object(as, data, len);
	as->event_has_data = false;
	resetStringInfo(&as->event);
}

/*
 * One JSON object of the reply, as UTF-8 text: parse it, then compact it
 * (fleetlm) or translate it (openai).
 */
static void
agent_stream_object(AgentStream *as, const char *text, size_t len)
{
	MemoryContext oldcxt;
	Jsonb	   *jb;
	char	   *error = NULL;

	as->nread++;
	oldcxt = MemoryContextSwitchTo(as->chunk_cxt);
	jb = agent_stream_parse(text, len, &error);
	if (jb == NULL)
	{
		if (as->at_eof)
			as->truncated = true;	/* cut in the middle of the object */
		else
			agent_stream_fail(as, AGENT_STREAM_MALFORMED,
							  "chunk %d of the reply is not valid JSON: %s",
							  as->nread, error);
	}
	else if (!JB_ROOT_IS_OBJECT(jb))
		agent_stream_fail(as, AGENT_STREAM_MALFORMED,
						  "chunk %d of the reply is not a JSON object",
						  as->nread);
	else if (as->protocol == AGENT_STREAM_FLEETLM)
		agent_stream_deliver(as, jb);
	else
		agent_stream_openai(as, jb);
	as->cur_type = NULL;
	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(as->chunk_cxt);
}

/*
 * Parse UTF-8 text as jsonb, in the current memory context.  Returns NULL
 * and sets *error if jsonb_in rejects it: a data exception, or a nesting
 * too deep for the stack.  Other errors propagate.  See the file header
 * for why catching here is safe.
 */
static Jsonb *
agent_stream_parse(const char *text, size_t len, char **error)
{
	MemoryContext cxt = CurrentMemoryContext;
	Jsonb	   *volatile result = NULL;

	PG_TRY();
	{
		char	   *s = pnstrdup(text, len);

		if (GetDatabaseEncoding() != PG_UTF8)
			s = pg_any_to_server(s, (int) len, PG_UTF8);
		result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
													CStringGetDatum(s)));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_DATA_EXCEPTION &&
			edata->sqlerrcode != ERRCODE_STATEMENT_TOO_COMPLEX)
			PG_RE_THROW();
		FlushErrorState();
		*error = edata->detail ? edata->detail : edata->message;
	}
	PG_END_TRY();
	return result;
}

/*
 * The stream failed: keep the first failure's status and message (in the
 * stream's context); later ones are consequences.
 */
static void
agent_stream_fail(AgentStream *as, AgentStreamStatus status,
				  const char *fmt,...)
{
	MemoryContext oldcxt;
	StringInfoData buf;

	if (AGENT_STREAM_FAILED(as->status))
		return;
	oldcxt = MemoryContextSwitchTo(as->cxt);
	initStringInfo(&buf);
	for (;;)
	{
		va_list		args;
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&buf, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&buf, needed);
	}
	MemoryContextSwitchTo(oldcxt);
	as->failure = buf.data;
	as->status = status;
}

/*
 * An agent-provided string for a failure message, cut (on a character
 * boundary) to AGENT_STREAM_QUOTE_MAX bytes.
 */
static char *
agent_stream_quote(const char *s, int len)
{
	int			clip = pg_mbcliplen(s, len, AGENT_STREAM_QUOTE_MAX);

	if (clip < len)
		return psprintf("%.*s...", clip, s);
	return pnstrdup(s, len);
}


/* ------------------------------------------------------------------------
 * Chunks
 * ------------------------------------------------------------------------
 */

/*
 * One UI-message-stream chunk: compact it, count it, hand it to the
 * callback.  A chunk that fails the stream is not delivered.
 */
static void
agent_stream_deliver(AgentStream *as, Jsonb *chunk)
{
	MemoryContext oldcxt;

	if (as->status != AGENT_STREAM_OK)
		return;
	agent_stream_compact(as, chunk);
	if (as->status != AGENT_STREAM_OK)
		return;
	as->chunks++;
	if (as->callback == NULL)
		return;
	oldcxt = MemoryContextSwitchTo(as->caller_cxt);
	as->callback(as->callback_arg, as->chunks, chunk);
	MemoryContextSwitchTo(oldcxt);
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
agent_stream_compact(AgentStream *as, Jsonb *chunk)
{
	static const char *const url_required[] = {"sourceId", "url", NULL};
	static const char *const url_optional[] = {"title", NULL};
	static const char *const doc_required[] = {"sourceId", "mediaType", "title", NULL};
	static const char *const doc_optional[] = {"filename", NULL};
	static const char *const file_required[] = {"url", "mediaType", NULL};
	static const char *const file_optional[] = {NULL};
	JsonbValue	tv;
	JsonbValue *t = agent_stream_get(&chunk->root, "type", &tv);
	const char *type;

	if (t == NULL || t->type != jbvString)
	{
		agent_stream_fail(as, AGENT_STREAM_MALFORMED,
						  "chunk %d of the reply has no \"type\" string",
						  as->nread);
		return;
	}
	type = pnstrdup(t->val.string.val, t->val.string.len);
	as->cur_type = type;

	if (strcmp(type, "text-start") == 0)
		agent_stream_text_start(as, chunk, AGENT_PART_TEXT);
	else if (strcmp(type, "text-delta") == 0)
		agent_stream_text_delta(as, chunk, AGENT_PART_TEXT, false);
	else if (strcmp(type, "text-end") == 0)
		agent_stream_text_delta(as, chunk, AGENT_PART_TEXT, true);
	else if (strcmp(type, "reasoning-start") == 0)
		agent_stream_text_start(as, chunk, AGENT_PART_REASONING);
	else if (strcmp(type, "reasoning-delta") == 0)
		agent_stream_text_delta(as, chunk, AGENT_PART_REASONING, false);
	else if (strcmp(type, "reasoning-end") == 0)
		agent_stream_text_delta(as, chunk, AGENT_PART_REASONING, true);
	else if (strncmp(type, "tool-input-", 11) == 0 ||
			 strncmp(type, "tool-output-", 12) == 0)
		agent_stream_tool_chunk(as, chunk, type);
	else if (strcmp(type, "source-url") == 0)
		agent_stream_fixed(as, chunk, url_required, url_optional);
	else if (strcmp(type, "source-document") == 0)
		agent_stream_fixed(as, chunk, doc_required, doc_optional);
	else if (strcmp(type, "file") == 0)
		agent_stream_fixed(as, chunk, file_required, file_optional);
	else if (strncmp(type, "data-", 5) == 0)
		agent_stream_data(as, chunk, type);
	else if (strcmp(type, "start-step") == 0)
		agent_stream_new_part(as, AGENT_PART_STEP, NULL);
	else if (strcmp(type, "finish-step") == 0)
	{
		/* the AI SDK forgets the step's active text and reasoning parts */
		for (int i = as->step_first; i < as->nparts; i++)
			as->parts[i]->active = false;
		as->step_first = as->nparts;
	}
	else if (strcmp(type, "start") == 0)
	{
		JsonbValue	id;
		Jsonb	   *meta;

		if (!agent_stream_string(as, chunk, "messageId", false, &id))
			return;
		if (id.type == jbvString)
			as->message_id = agent_stream_strdup(as, &id);
		meta = agent_stream_value(as, chunk, "messageMetadata", true);
		if (meta != NULL)
			agent_stream_merge_metadata(as, meta);
	}
	else if (strcmp(type, "finish") == 0)
	{
		JsonbValue	reason;
		Jsonb	   *meta;

		if (!agent_stream_string(as, chunk, "finishReason", false, &reason))
			return;
		if (reason.type == jbvString)
			as->finish_reason = agent_stream_strdup(as, &reason);
		meta = agent_stream_value(as, chunk, "messageMetadata", true);
		if (meta != NULL)
			agent_stream_merge_metadata(as, meta);
		as->complete = true;
	}
	else if (strcmp(type, "abort") == 0)
	{
		as->aborted = true;
		as->complete = true;
	}
	else if (strcmp(type, "message-metadata") == 0)
	{
		Jsonb	   *meta = agent_stream_value(as, chunk, "messageMetadata", true);

		if (meta != NULL)
			agent_stream_merge_metadata(as, meta);
	}
	else if (strcmp(type, "error") == 0)
	{
		JsonbValue	text;

		if (!agent_stream_string(as, chunk, "errorText", true, &text))
			return;
		if (as->agent_error == NULL)
			as->agent_error = agent_stream_strdup(as, &text);
	}
	else
	{
		AgentPart  *p = agent_stream_new_part(as, AGENT_PART_RAW, NULL);

		p->raw = agent_stream_keep(as, chunk);
	}
}

/*
 * The value of key in an object container, or NULL if it has none.
 */
static JsonbValue *
agent_stream_get(JsonbContainer *obj, const char *key, JsonbValue *buf)
{
	return getKeyJsonValueFromContainer(obj, key, strlen(key), buf);
}

/*
 * A string field of the chunk being compacted, into *out, pointing into
 * the chunk; out->type is jbvNull if it is absent or null.  Returns false,
 * having failed the stream, if a required one is absent or if it is not a
 * string.
 */
static bool
agent_stream_string(AgentStream *as, Jsonb *chunk, const char *key,
					bool required, JsonbValue *out)
{
	JsonbValue *v = agent_stream_get(&chunk->root, key, out);

	if (v == NULL || v->type == jbvNull)
	{
		out->type = jbvNull;
		if (!required)
			return true;
		agent_stream_fail(as, AGENT_STREAM_MALFORMED,
						  "chunk %d of the reply (\"%s\") has no \"%s\"",
						  as->nread, as->cur_type, key);
		return false;
	}
	if (v->type != jbvString)
	{
		agent_stream_fail(as, AGENT_STREAM_MALFORMED,
						  "\"%s\" of chunk %d of the reply (\"%s\") is not a string",
						  key, as->nread, as->cur_type);
		return false;
	}
	return true;
}

/*
 * An optional boolean field of the chunk being compacted: *out is -1 if it
 * is absent or null, else 0 or 1.  Returns false, having failed the
 * stream, if it is something else.
 */
static bool
agent_stream_bool(AgentStream *as, Jsonb *chunk, const char *key, int *out)
{
	JsonbValue	buf;
	JsonbValue *v = agent_stream_get(&chunk->root, key, &buf);

	*out = -1;
	if (v == NULL || v->type == jbvNull)
		return true;
	if (v->type != jbvBool)
	{
		agent_stream_fail(as, AGENT_STREAM_MALFORMED,
						  "\"%s\" of chunk %d of the reply (\"%s\") is not a boolean",
						  key, as->nread, as->cur_type);
		return false;
	}
	*out = v->val.boolean ? 1 : 0;
	return true;
}

/*
 * A field of the chunk, any JSON value, copied into the stream's context;
 * NULL if absent (or null, if null_is_absent).
 */
static Jsonb *
agent_stream_value(AgentStream *as, Jsonb *chunk, const char *key,
				   bool null_is_absent)
{
	JsonbValue	buf;
	JsonbValue *v = agent_stream_get(&chunk->root, key, &buf);
	MemoryContext oldcxt;
	Jsonb	   *jb;

	if (v == NULL || (null_is_absent && v->type == jbvNull))
		return NULL;
	oldcxt = MemoryContextSwitchTo(as->cxt);
	jb = JsonbValueToJsonb(v);
	MemoryContextSwitchTo(oldcxt);
	return jb;
}

/*
 * A copy of jb in the stream's context.
 */
static Jsonb *
agent_stream_keep(AgentStream *as, Jsonb *jb)
{
	Jsonb	   *copy = MemoryContextAlloc(as->cxt, VARSIZE(jb));

	memcpy(copy, jb, VARSIZE(jb));
	return copy;
}

/*
 * A JSON string value as a C string in the stream's context.
 */
static char *
agent_stream_strdup(AgentStream *as, JsonbValue *v)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(as->cxt);
	char	   *s = pnstrdup(v->val.string.val, v->val.string.len);

	MemoryContextSwitchTo(oldcxt);
	return s;
}

/*
 * Whether a value is a JSON object.
 */
static bool
agent_stream_is_object(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}


/* ------------------------------------------------------------------------
 * Compaction: the parts of the message
 * ------------------------------------------------------------------------
 */

/*
 * Append a new part of the given kind, with id (a JSON string) or none.
 */
static AgentPart *
agent_stream_new_part(AgentStream *as, AgentPartKind kind, JsonbValue *id)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(as->cxt);
	AgentPart  *p;

	if (as->nparts == as->maxparts)
	{
		as->maxparts *= 2;
		as->parts = repalloc(as->parts, as->maxparts * sizeof(AgentPart *));
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
	as->parts[as->nparts++] = p;
	MemoryContextSwitchTo(oldcxt);
	return p;
}

/*
 * The index namespace of a part, AGENT_NS_NONE if it is not looked up.
 */
static int
agent_stream_part_ns(AgentPart *p)
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
agent_stream_hash(int ns, const char *type, const char *id, int id_len)
{
	uint32		h = hash_combine((uint32) ns,
								 hash_bytes((const unsigned char *) id, id_len));

	if (type != NULL)
		h = hash_combine(h, hash_bytes((const unsigned char *) type,
									   strlen(type)));
	return h;
}

/*
 * Index parts[partno] by its id.  A chain lists the newest part first, so
 * a lookup finds the part an id was given to last; that is the AI SDK's
 * map of active text parts, and tool and data parts are indexed only once
 * per id.  The index is a hash table so that a reply of many parts and
 * chunks costs linear time.
 */
static void
agent_stream_index_add(AgentStream *as, int partno)
{
	AgentPart  *p = as->parts[partno];
	uint32		h = agent_stream_hash(agent_stream_part_ns(p), p->type,
									  p->id, p->id_len);
	int			b = h & (as->nbuckets - 1);

	p->next = as->buckets[b];
	as->buckets[b] = partno;
	p->indexed = true;
	as->nindexed++;
	if (as->nindexed > 2 * as->nbuckets)
		agent_stream_index_build(as, as->nbuckets * 4);
}

/*
 * Rebuild the part index with nbuckets buckets, keeping the chains newest
 * first.
 */
static void
agent_stream_index_build(AgentStream *as, int nbuckets)
{
	int		   *buckets = MemoryContextAlloc(as->cxt, nbuckets * sizeof(int));

	memset(buckets, -1, nbuckets * sizeof(int));
	for (int i = 0; i < as->nparts; i++)
	{
		AgentPart  *p = as->parts[i];
		int			b;

		if (!p->indexed)
			continue;
		b = agent_stream_hash(agent_stream_part_ns(p), p->type,
							  p->id, p->id_len) & (nbuckets - 1);
		p->next = buckets[b];
		buckets[b] = i;
	}
	pfree(as->buckets);
	as->buckets = buckets;
	as->nbuckets = nbuckets;
}

/*
 * The newest indexed part with this namespace, type (data parts) and id,
 * or NULL.
 */
static AgentPart *
agent_stream_find(AgentStream *as, int ns, const char *type, const char *id,
				  int id_len)
{
	uint32		h = agent_stream_hash(ns, type, id, id_len);

	for (int i = as->buckets[h & (as->nbuckets - 1)]; i >= 0;
		 i = as->parts[i]->next)
	{
		AgentPart  *p = as->parts[i];

		if (agent_stream_part_ns(p) == ns && p->id_len == id_len &&
			memcmp(p->id, id, id_len) == 0 &&
			(type == NULL || strcmp(p->type, type) == 0))
			return p;
	}
	return NULL;
}

/*
 * text-start, reasoning-start: a new active part for the id.
 */
static void
agent_stream_text_start(AgentStream *as, Jsonb *chunk, AgentPartKind kind)
{
	JsonbValue	id;
	AgentPart  *p;

	if (!agent_stream_string(as, chunk, "id", true, &id))
		return;
	p = agent_stream_new_part(as, kind, &id);
	p->active = true;
	p->provider_metadata = agent_stream_value(as, chunk, "providerMetadata", true);
	agent_stream_index_add(as, as->nparts - 1);
}

/*
 * text-delta and text-end (end), and their reasoning twins: extend or
 * close the active part of the id.
 */
static void
agent_stream_text_delta(AgentStream *as, Jsonb *chunk, AgentPartKind kind,
						bool end)
{
	JsonbValue	id;
	JsonbValue	delta;
	AgentPart  *p;
	Jsonb	   *pm;

	if (!agent_stream_string(as, chunk, "id", true, &id) ||
		(!end && !agent_stream_string(as, chunk, "delta", true, &delta)))
		return;
	p = agent_stream_find(as, kind == AGENT_PART_TEXT ? AGENT_NS_TEXT : AGENT_NS_REASONING,
						  NULL, id.val.string.val, id.val.string.len);
	if (p == NULL || !p->active)
	{
		agent_stream_fail(as, AGENT_STREAM_MALFORMED,
						  "chunk %d of the reply (\"%s\") is for no active %s part: \"%s\"",
						  as->nread, as->cur_type,
						  kind == AGENT_PART_TEXT ? "text" : "reasoning",
						  agent_stream_quote(id.val.string.val, id.val.string.len));
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
	pm = agent_stream_value(as, chunk, "providerMetadata", true);
	if (pm != NULL)
		p->provider_metadata = pm;
}

/*
 * The tool part of a tool call, created (type "tool-<name>", or
 * "dynamic-tool") if there is none yet.
 */
static AgentPart *
agent_stream_tool_part(AgentStream *as, JsonbValue *call_id, JsonbValue *name,
					   int dynamic)
{
	AgentPart  *p = agent_stream_find(as, AGENT_NS_TOOL, NULL,
									  call_id->val.string.val,
									  call_id->val.string.len);

	if (p != NULL)
		return p;
	p = agent_stream_new_part(as, AGENT_PART_TOOL, call_id);
	p->tool_name = agent_stream_strdup(as, name);
	p->dynamic = dynamic == 1;
	agent_stream_index_add(as, as->nparts - 1);
	return p;
}

/*
 * The tool part of a tool call that must exist (and, if streamed, have
 * had a tool-input-start); NULL, having failed the stream, if it does not.
 */
static AgentPart *
agent_stream_tool_known(AgentStream *as, JsonbValue *call_id, bool streamed)
{
	AgentPart  *p = agent_stream_find(as, AGENT_NS_TOOL, NULL,
									  call_id->val.string.val,
									  call_id->val.string.len);

	if (p != NULL && (!streamed || p->input_streamed))
		return p;
	agent_stream_fail(as, AGENT_STREAM_MALFORMED,
					  "chunk %d of the reply (\"%s\") is for no %stool call: \"%s\"",
					  as->nread, as->cur_type,
					  streamed ? "started " : "",
					  agent_stream_quote(call_id->val.string.val,
										 call_id->val.string.len));
	return NULL;
}

/*
 * Set a tool part's state as the AI SDK's updateToolPart does: input,
 * output, rawInput, errorText and preliminary take the given values
 * (NULL / -1 = absent); providerExecuted, once set, stays unless given
 * again.
 */
static void
agent_stream_tool_update(AgentPart *p, const char *state, Jsonb *input,
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
 * A tool part's input: the one it was given, or, while it streams, the
 * text of its deltas if that is complete JSON (in the current context);
 * NULL if neither.
 */
static Jsonb *
agent_stream_tool_input(AgentStream *as, AgentPart *p)
{
	char	   *error;

	if (p->input != NULL || strcmp(p->state, "input-streaming") != 0 ||
		p->text.len == 0)
		return p->input;
	return agent_stream_parse(p->text.data, p->text.len, &error);
}

/*
 * tool-input-start, -delta, -available, -error and tool-output-available,
 * -error.
 */
static void
agent_stream_tool_chunk(AgentStream *as, Jsonb *chunk, const char *type)
{
	JsonbValue	call_id;
	JsonbValue	name;
	JsonbValue	text;
	int			provider_executed;
	int			dynamic;
	int			preliminary;
	AgentPart  *p;

	if (!agent_stream_string(as, chunk, "toolCallId", true, &call_id) ||
		!agent_stream_bool(as, chunk, "providerExecuted", &provider_executed) ||
		!agent_stream_bool(as, chunk, "dynamic", &dynamic))
		return;

	if (strcmp(type, "tool-input-start") == 0)
	{
		if (!agent_stream_string(as, chunk, "toolName", true, &name))
			return;
		p = agent_stream_tool_part(as, &call_id, &name, dynamic);
		p->input_streamed = true;
		resetStringInfo(&p->text);
		agent_stream_tool_update(p, "input-streaming", NULL, NULL, NULL, NULL,
								 -1, provider_executed, NULL);
	}
	else if (strcmp(type, "tool-input-delta") == 0)
	{
		if (!agent_stream_string(as, chunk, "inputTextDelta", true, &text) ||
			(p = agent_stream_tool_known(as, &call_id, true)) == NULL)
			return;
		appendBinaryStringInfo(&p->text, text.val.string.val,
							   text.val.string.len);
		agent_stream_tool_update(p, "input-streaming", NULL, NULL, NULL, NULL,
								 -1, -1, NULL);
	}
	else if (strcmp(type, "tool-input-available") == 0)
	{
		if (!agent_stream_string(as, chunk, "toolName", true, &name))
			return;
		p = agent_stream_tool_part(as, &call_id, &name, dynamic);
		agent_stream_tool_update(p, "input-available",
								 agent_stream_value(as, chunk, "input", false),
								 NULL, NULL, NULL, -1, provider_executed,
								 agent_stream_value(as, chunk, "providerMetadata", true));
	}
	else if (strcmp(type, "tool-input-error") == 0)
	{
		if (!agent_stream_string(as, chunk, "toolName", true, &name) ||
			!agent_stream_string(as, chunk, "errorText", true, &text))
			return;
		p = agent_stream_tool_part(as, &call_id, &name, dynamic);
		agent_stream_tool_update(p, "output-error", NULL, NULL,
								 agent_stream_value(as, chunk, "input", false),
								 agent_stream_strdup(as, &text), -1,
								 provider_executed,
								 agent_stream_value(as, chunk, "providerMetadata", true));
	}
	else if (strcmp(type, "tool-output-available") == 0)
	{
		Jsonb	   *input;

		if (!agent_stream_bool(as, chunk, "preliminary", &preliminary) ||
			(p = agent_stream_tool_known(as, &call_id, false)) == NULL)
			return;
		input = agent_stream_tool_input(as, p);
		if (input != NULL && input != p->input)
			input = agent_stream_keep(as, input);
		agent_stream_tool_update(p, "output-available", input,
								 agent_stream_value(as, chunk, "output", false),
								 NULL, NULL, preliminary, provider_executed,
								 NULL);
	}
	else if (strcmp(type, "tool-output-error") == 0)
	{
		Jsonb	   *input;

		if (!agent_stream_string(as, chunk, "errorText", true, &text) ||
			(p = agent_stream_tool_known(as, &call_id, false)) == NULL)
			return;
		input = agent_stream_tool_input(as, p);
		if (input != NULL && input != p->input)
			input = agent_stream_keep(as, input);
		agent_stream_tool_update(p, "output-error", input, NULL, p->raw_input,
								 agent_stream_strdup(as, &text), -1,
								 provider_executed, NULL);
	}
	else
	{
		/* tool-input-<something new>: forwarded like any unknown chunk */
		p = agent_stream_new_part(as, AGENT_PART_RAW, NULL);
		p->raw = agent_stream_keep(as, chunk);
	}
}

/*
 * source-url, source-document, file: a part of the chunk's type with the
 * listed string fields (required ones checked) and providerMetadata, as
 * the AI SDK copies them; other fields are dropped.
 */
static void
agent_stream_fixed(AgentStream *as, Jsonb *chunk, const char *const *required,
				   const char *const *optional)
{
	JsonbParseState *ps = NULL;
	JsonbValue	v;
	JsonbValue *res;
	AgentPart  *p;

	pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	agent_stream_push_kv(&ps, "type", as->cur_type);
	for (int pass = 0; pass < 2; pass++)
	{
		const char *const *keys = pass == 0 ? required : optional;

		for (int i = 0; keys[i] != NULL; i++)
		{
			if (!agent_stream_string(as, chunk, keys[i], pass == 0, &v))
				return;
			if (v.type != jbvString)
				continue;
			agent_stream_push_key(&ps, keys[i]);
			pushJsonbValue(&ps, WJB_VALUE, &v);
		}
	}
	if (agent_stream_get(&chunk->root, "providerMetadata", &v) != NULL &&
		v.type != jbvNull)
	{
		agent_stream_push_key(&ps, "providerMetadata");
		pushJsonbValue(&ps, WJB_VALUE, &v);
	}
	res = pushJsonbValue(&ps, WJB_END_OBJECT, NULL);

	p = agent_stream_new_part(as, AGENT_PART_RAW, NULL);
	p->raw = agent_stream_keep(as, JsonbValueToJsonb(res));
}

/*
 * data-<name>: the chunk is the part.  With an id, a later chunk of the
 * same type and id replaces the earlier one's data, in place.  Transient
 * ones are delivered but not stored.
 */
static void
agent_stream_data(AgentStream *as, Jsonb *chunk, const char *type)
{
	JsonbValue	id;
	int			transient;
	Jsonb	   *data;
	AgentPart  *p;

	if (!agent_stream_string(as, chunk, "id", false, &id) ||
		!agent_stream_bool(as, chunk, "transient", &transient))
		return;
	if (transient == 1)
		return;
	data = agent_stream_value(as, chunk, "data", false);
	if (id.type == jbvString)
	{
		p = agent_stream_find(as, AGENT_NS_DATA, type, id.val.string.val,
							  id.val.string.len);
		if (p != NULL)
		{
			p->data = data;
			return;
		}
	}
	p = agent_stream_new_part(as, AGENT_PART_DATA,
							  id.type == jbvString ? &id : NULL);
	p->type = MemoryContextStrdup(as->cxt, type);
	p->raw = agent_stream_keep(as, chunk);
	p->data = data;
	if (p->id != NULL)
		agent_stream_index_add(as, as->nparts - 1);
}

/*
 * Merge messageMetadata (in the stream's context) into the message's
 * metadata, as the AI SDK's mergeObjects does: objects on both sides are
 * merged key by key, recursively; anything else replaces.
 */
static void
agent_stream_merge_metadata(AgentStream *as, Jsonb *meta)
{
	JsonbParseState *ps = NULL;
	JsonbValue *res;

	if (as->metadata == NULL || !JB_ROOT_IS_OBJECT(as->metadata) ||
		!JB_ROOT_IS_OBJECT(meta))
	{
		as->metadata = meta;
		return;
	}
	res = agent_stream_merge(&ps, &as->metadata->root, &meta->root);
	as->metadata = agent_stream_keep(as, JsonbValueToJsonb(res));
}

/*
 * Push the merge of two objects: base's keys that over lacks, then over's
 * keys, each merged with base's value if both are objects.
 */
static JsonbValue *
agent_stream_merge(JsonbParseState **ps, JsonbContainer *base,
				   JsonbContainer *over)
{
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	k;
	JsonbValue	v;
	JsonbValue	buf;

	pushJsonbValue(ps, WJB_BEGIN_OBJECT, NULL);
	it = JsonbIteratorInit(base);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		if (tok != WJB_KEY)
			continue;
		(void) JsonbIteratorNext(&it, &v, true);
		if (getKeyJsonValueFromContainer(over, k.val.string.val,
										 k.val.string.len, &buf) != NULL)
			continue;
		pushJsonbValue(ps, WJB_KEY, &k);
		pushJsonbValue(ps, WJB_VALUE, &v);
	}
	it = JsonbIteratorInit(over);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		JsonbValue *old;

		if (tok != WJB_KEY)
			continue;
		(void) JsonbIteratorNext(&it, &v, true);
		pushJsonbValue(ps, WJB_KEY, &k);
		old = getKeyJsonValueFromContainer(base, k.val.string.val,
										   k.val.string.len, &buf);
		if (old != NULL && agent_stream_is_object(old) &&
			agent_stream_is_object(&v))
			(void) agent_stream_merge(ps, old->val.binary.data,
									  v.val.binary.data);
		else
			pushJsonbValue(ps, WJB_VALUE, &v);
	}
	return pushJsonbValue(ps, WJB_END_OBJECT, NULL);
}


/* ------------------------------------------------------------------------
 * Building jsonb
 * ------------------------------------------------------------------------
 */

/*
 * Push an object key.
 */
static void
agent_stream_push_key(JsonbParseState **ps, const char *key)
{
	agent_stream_push_string(ps, WJB_KEY, key, strlen(key));
}

/*
 * Push a string as a key, value or element.
 */
static void
agent_stream_push_string(JsonbParseState **ps, JsonbIteratorToken tok,
						 const char *s, int len)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = unconstify(char *, s);
	v.val.string.len = len;
	pushJsonbValue(ps, tok, &v);
}

/*
 * Push a key and its string value.
 */
static void
agent_stream_push_kv(JsonbParseState **ps, const char *key, const char *value)
{
	agent_stream_push_key(ps, key);
	agent_stream_push_string(ps, WJB_VALUE, value, strlen(value));
}

/*
 * Push a stored jsonb value (a scalar or a container) as a value or
 * element.
 */
static void
agent_stream_push_jsonb(JsonbParseState **ps, JsonbIteratorToken tok,
						Jsonb *jb)
{
	JsonbValue	v;

	if (JB_ROOT_IS_SCALAR(jb))
		(void) JsonbExtractScalar(&jb->root, &v);
	else
	{
		v.type = jbvBinary;
		v.val.binary.data = &jb->root;
		v.val.binary.len = VARSIZE(jb) - VARHDRSZ;
	}
	pushJsonbValue(ps, tok, &v);
}

/*
 * Push one part of the message, in the AI SDK's UIMessage shape.
 */
static void
agent_stream_push_part(AgentStream *as, JsonbParseState **ps, AgentPart *p)
{
	switch (p->kind)
	{
		case AGENT_PART_TEXT:
		case AGENT_PART_REASONING:
			pushJsonbValue(ps, WJB_BEGIN_OBJECT, NULL);
			agent_stream_push_kv(ps, "type",
								 p->kind == AGENT_PART_TEXT ? "text" : "reasoning");
			agent_stream_push_key(ps, "text");
			agent_stream_push_string(ps, WJB_VALUE, p->text.data, p->text.len);
			agent_stream_push_kv(ps, "state", p->done ? "done" : "streaming");
			if (p->provider_metadata != NULL)
			{
				agent_stream_push_key(ps, "providerMetadata");
				agent_stream_push_jsonb(ps, WJB_VALUE, p->provider_metadata);
			}
			pushJsonbValue(ps, WJB_END_OBJECT, NULL);
			break;

		case AGENT_PART_TOOL:
			{
				Jsonb	   *input = agent_stream_tool_input(as, p);
				JsonbValue	b;

				pushJsonbValue(ps, WJB_BEGIN_OBJECT, NULL);
				if (p->dynamic)
				{
					agent_stream_push_kv(ps, "type", "dynamic-tool");
					agent_stream_push_kv(ps, "toolName", p->tool_name);
				}
				else
					agent_stream_push_kv(ps, "type",
										 psprintf("tool-%s", p->tool_name));
				agent_stream_push_kv(ps, "toolCallId", p->id);
				agent_stream_push_kv(ps, "state", p->state);
				if (input != NULL)
				{
					agent_stream_push_key(ps, "input");
					agent_stream_push_jsonb(ps, WJB_VALUE, input);
				}
				if (p->output != NULL)
				{
					agent_stream_push_key(ps, "output");
					agent_stream_push_jsonb(ps, WJB_VALUE, p->output);
				}
				if (p->raw_input != NULL)
				{
					agent_stream_push_key(ps, "rawInput");
					agent_stream_push_jsonb(ps, WJB_VALUE, p->raw_input);
				}
				if (p->error_text != NULL)
					agent_stream_push_kv(ps, "errorText", p->error_text);
				b.type = jbvBool;
				if (p->provider_executed >= 0)
				{
					agent_stream_push_key(ps, "providerExecuted");
					b.val.boolean = p->provider_executed == 1;
					pushJsonbValue(ps, WJB_VALUE, &b);
				}
				if (p->preliminary >= 0)
				{
					agent_stream_push_key(ps, "preliminary");
					b.val.boolean = p->preliminary == 1;
					pushJsonbValue(ps, WJB_VALUE, &b);
				}
				if (p->provider_metadata != NULL)
				{
					agent_stream_push_key(ps, "callProviderMetadata");
					agent_stream_push_jsonb(ps, WJB_VALUE, p->provider_metadata);
				}
				pushJsonbValue(ps, WJB_END_OBJECT, NULL);
			}
			break;

		case AGENT_PART_STEP:
			pushJsonbValue(ps, WJB_BEGIN_OBJECT, NULL);
			agent_stream_push_kv(ps, "type", "step-start");
			pushJsonbValue(ps, WJB_END_OBJECT, NULL);
			break;

		case AGENT_PART_DATA:
			{
				JsonbIterator *it = JsonbIteratorInit(&p->raw->root);
				JsonbIteratorToken tok;
				JsonbValue	k;
				JsonbValue	v;

				/* the chunk's fields, with the latest data */
				pushJsonbValue(ps, WJB_BEGIN_OBJECT, NULL);
				while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
				{
					if (tok != WJB_KEY)
						continue;
					(void) JsonbIteratorNext(&it, &v, true);
					if (k.val.string.len == 4 &&
						memcmp(k.val.string.val, "data", 4) == 0)
						continue;
					pushJsonbValue(ps, WJB_KEY, &k);
					pushJsonbValue(ps, WJB_VALUE, &v);
				}
				if (p->data != NULL)
				{
					agent_stream_push_key(ps, "data");
					agent_stream_push_jsonb(ps, WJB_VALUE, p->data);
				}
				pushJsonbValue(ps, WJB_END_OBJECT, NULL);
			}
			break;

		case AGENT_PART_RAW:
			agent_stream_push_jsonb(ps, WJB_ELEM, p->raw);
			break;
	}
}


/* ------------------------------------------------------------------------
 * Protocol openai: chat.completion.chunk objects to UI-message-stream
 * chunks
 * ------------------------------------------------------------------------
 */

/*
 * Translate one chat.completion.chunk.  The first one starts the message
 * (messageId = its id); choice 0 carries the deltas and the finish reason
 * (other choices, n > 1, are ignored); usage becomes metadata.usage; an
 * "error" member is the agent's error.  Steps (start-step, finish-step)
 * are not made up: the message gets no step-start part.
 */
static void
agent_stream_openai(AgentStream *as, Jsonb *obj)
{
	JsonbValue	buf;
	JsonbValue *v;

	v = agent_stream_get(&obj->root, "error", &buf);
	if (v != NULL && v->type != jbvNull)
	{
		agent_stream_openai_error(as, v);
		return;
	}

	if (!as->oa_started)
	{
		JsonbParseState *ps = NULL;

		as->oa_started = true;
		agent_stream_emit_begin(&ps, "start");
		v = agent_stream_get(&obj->root, "id", &buf);
		if (v != NULL && v->type == jbvString)
		{
			agent_stream_push_key(&ps, "messageId");
			pushJsonbValue(&ps, WJB_VALUE, v);
		}
		agent_stream_emit_end(as, &ps);
	}

	v = agent_stream_get(&obj->root, "choices", &buf);
	if (v != NULL && v->type == jbvBinary &&
		JsonContainerIsArray(v->val.binary.data) &&
		JsonContainerSize(v->val.binary.data) > 0)
	{
		JsonbValue *choice = getIthJsonbValueFromContainer(v->val.binary.data, 0);

		if (agent_stream_is_object(choice))
			agent_stream_openai_choice(as, choice->val.binary.data);
	}

	v = agent_stream_get(&obj->root, "usage", &buf);
	if (as->status == AGENT_STREAM_OK && v != NULL && agent_stream_is_object(v))
	{
		JsonbParseState *ps = NULL;

		agent_stream_emit_begin(&ps, "message-metadata");
		agent_stream_push_key(&ps, "messageMetadata");
		pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
		agent_stream_push_key(&ps, "usage");
		pushJsonbValue(&ps, WJB_VALUE, v);
		pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
		agent_stream_emit_end(as, &ps);
	}
}

/*
 * Choice 0 of a chat.completion.chunk: reasoning (reasoning_content, or
 * reasoning as some servers call it), content, tool_calls, finish_reason.
 */
static void
agent_stream_openai_choice(AgentStream *as, JsonbContainer *choice)
{
	JsonbValue	buf;
	JsonbValue	dbuf;
	JsonbValue *delta = agent_stream_get(choice, "delta", &dbuf);
	JsonbValue *v;

	if (delta != NULL && agent_stream_is_object(delta))
	{
		JsonbContainer *d = delta->val.binary.data;

		v = agent_stream_get(d, "reasoning_content", &buf);
		if (v == NULL || v->type != jbvString)
			v = agent_stream_get(d, "reasoning", &buf);
		if (v != NULL && v->type == jbvString && v->val.string.len > 0)
			agent_stream_openai_text(as, true, v);

		v = agent_stream_get(d, "content", &buf);
		if (v != NULL && v->type == jbvString && v->val.string.len > 0)
			agent_stream_openai_text(as, false, v);

		v = agent_stream_get(d, "tool_calls", &buf);
		if (v != NULL && v->type == jbvBinary &&
			JsonContainerIsArray(v->val.binary.data))
		{
			int			n = JsonContainerSize(v->val.binary.data);

			for (int i = 0; i < n && as->status == AGENT_STREAM_OK; i++)
			{
				JsonbValue *call = getIthJsonbValueFromContainer(v->val.binary.data, i);

				if (agent_stream_is_object(call))
					agent_stream_openai_tool(as, call->val.binary.data, i);
			}
		}
	}

	v = agent_stream_get(choice, "finish_reason", &buf);
	if (as->status == AGENT_STREAM_OK && v != NULL && v->type == jbvString)
		agent_stream_openai_finish(as, v);
}

/*
 * A content (or, if reasoning, a reasoning) delta: one text part for all
 * content, one reasoning part for the reasoning before it.  Content ends
 * the reasoning part; reasoning after content opens a new one.
 */
static void
agent_stream_openai_text(AgentStream *as, bool reasoning, JsonbValue *delta)
{
	JsonbParseState *ps = NULL;
	bool	   *open = reasoning ? &as->oa_reasoning_open : &as->oa_text_open;
	int		   *n = reasoning ? &as->oa_reasoning_n : &as->oa_text_n;
	const char *kind = reasoning ? "reasoning" : "text";
	char		id[32];
	char		type[32];

	if (!reasoning && as->oa_reasoning_open)
		agent_stream_openai_close(as, true);
	if (!*open)
	{
		*open = true;
		(*n)++;
		snprintf(id, sizeof(id), "%s-%d", kind, *n - 1);
		snprintf(type, sizeof(type), "%s-start", kind);
		agent_stream_emit_begin(&ps, type);
		agent_stream_push_kv(&ps, "id", id);
		agent_stream_emit_end(as, &ps);
	}
	snprintf(id, sizeof(id), "%s-%d", kind, *n - 1);
	snprintf(type, sizeof(type), "%s-delta", kind);
	agent_stream_emit_begin(&ps, type);
	agent_stream_push_kv(&ps, "id", id);
	agent_stream_push_key(&ps, "delta");
	pushJsonbValue(&ps, WJB_VALUE, delta);
	agent_stream_emit_end(as, &ps);
}

/*
 * End the open text (or reasoning) part, if there is one.
 */
static void
agent_stream_openai_close(AgentStream *as, bool reasoning)
{
	JsonbParseState *ps = NULL;
	bool	   *open = reasoning ? &as->oa_reasoning_open : &as->oa_text_open;
	int			n = reasoning ? as->oa_reasoning_n : as->oa_text_n;
	const char *kind = reasoning ? "reasoning" : "text";
	char		id[32];
	char		type[32];

	if (!*open)
		return;
	*open = false;
	snprintf(id, sizeof(id), "%s-%d", kind, n - 1);
	snprintf(type, sizeof(type), "%s-end", kind);
	agent_stream_emit_begin(&ps, type);
	agent_stream_push_kv(&ps, "id", id);
	agent_stream_emit_end(as, &ps);
}

/*
 * One element of delta.tool_calls, by its index (or its position, if it
 * has none): the first one of an index starts the tool call (its id, or
 * "call_<index>"; its function.name, or "unknown"), and every
 * function.arguments piece is an input delta.
 */
static void
agent_stream_openai_tool(AgentStream *as, JsonbContainer *call, int position)
{
	JsonbParseState *ps = NULL;
	JsonbValue	buf;
	JsonbValue	fbuf;
	JsonbValue *v;
	JsonbValue *fn;
	AgentOpenAITool *tool = NULL;
	int			index = position;

	v = agent_stream_get(call, "index", &buf);
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
			agent_stream_fail(as, AGENT_STREAM_MALFORMED,
							  "tool call %d of chunk %d of the reply has an \"index\" that is not a non-negative integer",
							  position + 1, as->nread);
			return;
		}
		index = (int) l;
	}
	fn = agent_stream_get(call, "function", &fbuf);
	if (fn != NULL && !agent_stream_is_object(fn))
		fn = NULL;

	/* deltas of one call come together: look from the newest */
	for (int i = as->oa_ntools - 1; i >= 0; i--)
		if (as->oa_tools[i].index == index)
		{
			tool = &as->oa_tools[i];
			break;
		}

	if (tool == NULL)
	{
		MemoryContext oldcxt = MemoryContextSwitchTo(as->cxt);

		if (as->oa_ntools == as->oa_maxtools)
		{
			as->oa_maxtools = Max(4, as->oa_maxtools * 2);
			if (as->oa_tools == NULL)
				as->oa_tools = palloc(as->oa_maxtools * sizeof(AgentOpenAITool));
			else
				as->oa_tools = repalloc(as->oa_tools,
										as->oa_maxtools * sizeof(AgentOpenAITool));
		}
		tool = &as->oa_tools[as->oa_ntools++];
		tool->index = index;
		v = agent_stream_get(call, "id", &buf);
		if (v != NULL && v->type == jbvString && v->val.string.len > 0)
			tool->id = pnstrdup(v->val.string.val, v->val.string.len);
		else
			tool->id = psprintf("call_%d", index);
		v = fn ? agent_stream_get(fn->val.binary.data, "name", &buf) : NULL;
		if (v != NULL && v->type == jbvString && v->val.string.len > 0)
			tool->name = pnstrdup(v->val.string.val, v->val.string.len);
		else
			tool->name = pstrdup("unknown");
		initStringInfo(&tool->args);
		MemoryContextSwitchTo(oldcxt);

		agent_stream_emit_begin(&ps, "tool-input-start");
		agent_stream_push_kv(&ps, "toolCallId", tool->id);
		agent_stream_push_kv(&ps, "toolName", tool->name);
		agent_stream_emit_end(as, &ps);
	}

	v = fn ? agent_stream_get(fn->val.binary.data, "arguments", &buf) : NULL;
	if (v != NULL && v->type == jbvString && v->val.string.len > 0)
	{
		appendBinaryStringInfo(&tool->args, v->val.string.val,
							   v->val.string.len);
		agent_stream_emit_begin(&ps, "tool-input-delta");
		agent_stream_push_kv(&ps, "toolCallId", tool->id);
		agent_stream_push_key(&ps, "inputTextDelta");
		pushJsonbValue(&ps, WJB_VALUE, v);
		agent_stream_emit_end(as, &ps);
	}
}

/*
 * finish_reason: end the text and reasoning parts, give every tool call
 * its input (the concatenated arguments parsed; blank ones are {}, as the
 * AI SDK's parseToolCall has it; arguments that are not JSON make a
 * tool-input-error with them as rawInput), then finish with the reason in
 * the AI SDK's words.  Only the first finish_reason counts.
 */
static void
agent_stream_openai_finish(AgentStream *as, JsonbValue *reason)
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

	if (as->oa_finished)
		return;
	as->oa_finished = true;
	agent_stream_openai_close(as, true);
	agent_stream_openai_close(as, false);

	for (int i = 0; i < as->oa_ntools && as->status == AGENT_STREAM_OK; i++)
	{
		AgentOpenAITool *tool = &as->oa_tools[i];
		Jsonb	   *input;
		char	   *error = NULL;

		if (agent_stream_blank(tool->args.data, tool->args.len))
			input = agent_stream_parse("{}", 2, &error);
		else
			input = agent_stream_parse(tool->args.data, tool->args.len, &error);

		agent_stream_emit_begin(&ps, input ? "tool-input-available" : "tool-input-error");
		agent_stream_push_kv(&ps, "toolCallId", tool->id);
		agent_stream_push_kv(&ps, "toolName", tool->name);
		agent_stream_push_key(&ps, "input");
		if (input != NULL)
			agent_stream_push_jsonb(&ps, WJB_VALUE, input);
		else
		{
			agent_stream_push_string(&ps, WJB_VALUE, tool->args.data,
									 tool->args.len);
			agent_stream_push_kv(&ps, "errorText",
								 psprintf("the arguments of tool call \"%s\" are not valid JSON: %s",
										  tool->id, error));
		}
		agent_stream_emit_end(as, &ps);
	}

	for (int i = 0; i < lengthof(map); i++)
		if (strlen(map[i][0]) == reason->val.string.len &&
			memcmp(map[i][0], reason->val.string.val, reason->val.string.len) == 0)
			mapped = map[i][1];
	agent_stream_emit_begin(&ps, "finish");
	agent_stream_push_kv(&ps, "finishReason", mapped);
	agent_stream_emit_end(as, &ps);
}

/*
 * A chunk with an "error" member: an error chunk whose errorText is the
 * error's message (or the error itself, if it is a string, or its JSON
 * text).
 */
static void
agent_stream_openai_error(AgentStream *as, JsonbValue *error)
{
	JsonbParseState *ps = NULL;
	JsonbValue	buf;
	JsonbValue *m = NULL;

	agent_stream_emit_begin(&ps, "error");
	agent_stream_push_key(&ps, "errorText");
	if (agent_stream_is_object(error))
		m = agent_stream_get(error->val.binary.data, "message", &buf);
	if (error->type == jbvString)
		pushJsonbValue(&ps, WJB_VALUE, error);
	else if (m != NULL && m->type == jbvString)
		pushJsonbValue(&ps, WJB_VALUE, m);
	else
	{
		Jsonb	   *jb = JsonbValueToJsonb(error);
		char	   *s = JsonbToCString(NULL, &jb->root, VARSIZE(jb));

		agent_stream_push_string(&ps, WJB_VALUE, s, strlen(s));
	}
	agent_stream_emit_end(as, &ps);
}

/*
 * Start building a chunk of the given type.
 */
static void
agent_stream_emit_begin(JsonbParseState **ps, const char *type)
{
	pushJsonbValue(ps, WJB_BEGIN_OBJECT, NULL);
	agent_stream_push_kv(ps, "type", type);
}

/*
 * Finish building a chunk and deliver it, as if the agent had sent it.
 */
static void
agent_stream_emit_end(AgentStream *as, JsonbParseState **ps)
{
	JsonbValue *res = pushJsonbValue(ps, WJB_END_OBJECT, NULL);

	*ps = NULL;
	agent_stream_deliver(as, JsonbValueToJsonb(res));
}


/* ------------------------------------------------------------------------
 * SQL: fleetlm.compact_agent_reply
 * ------------------------------------------------------------------------
 */

/*
 * A NULL argument is an error naming it.
 */
static void
agent_stream_arg_not_null(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", name)));
}

/*
 * fleetlm.compact_agent_reply(body, protocol, max_line, max_bytes) -> one
 * row (message, complete, aborted, error, chunks): the parser run over a
 * whole reply, for tests and for debugging an agent.
 *
 * The body (converted to UTF-8, as it would come off the wire) is fed in
 * slices of 1, 2, 3, 7, 13, 31 and 64 bytes in turn, so that lines,
 * CRLFs, SSE events and UTF-8 sequences are split at every kind of place,
 * with a feed_reserve of 64 bytes, processing after every eleventh slice and
 * whenever a feed finds the buffer full: the same calls the dispatcher
 * makes from libcurl's callbacks.  As there, the first failure or [DONE]
 * stops the feeding.
 *
 * The message's fallback id, when the reply has no start.messageId, is
 * "msg-" and 16 hex digits of a hash of the body, so that the result
 * depends on the arguments alone and the function can be IMMUTABLE.
 */
Datum
fleetlm_compact_agent_reply(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	text	   *body;
	AgentStreamProtocol protocol;
	char	   *data;
	size_t		len;
	size_t		pos = 0;
	int			slice = 0;
	bool		was_full = false;
	AgentStream *as;
	AgentStreamResult res;
	char		fallback_id[32];
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};

	agent_stream_arg_not_null(fcinfo, 0, "body");
	agent_stream_arg_not_null(fcinfo, 1, "protocol");
	agent_stream_arg_not_null(fcinfo, 2, "max_line");
	agent_stream_arg_not_null(fcinfo, 3, "max_bytes");
	body = PG_GETARG_TEXT_PP(0);
	protocol = agent_stream_protocol(text_to_cstring(PG_GETARG_TEXT_PP(1)));
	as = agent_stream_create(protocol, PG_GETARG_INT32(2), PG_GETARG_INT32(3),
							 AGENT_STREAM_SQL_RESERVE, NULL, NULL);

	data = pg_server_to_any(VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body), PG_UTF8);
	if (data == VARDATA_ANY(body))
		len = VARSIZE_ANY_EXHDR(body);
	else
		len = strlen(data);

	while (pos < len)
	{
		size_t		n = Min((size_t) agent_stream_slices[slice % lengthof(agent_stream_slices)],
							len - pos);
		AgentStreamStatus st = agent_stream_feed(as, data + pos, n);

		if (st == AGENT_STREAM_FULL)
		{
			/* a slice is at most feed_reserve, so it fits once processed */
			if (was_full)
				elog(ERROR, "agent stream buffer still full after processing");
			was_full = true;
			(void) agent_stream_process(as);
			continue;
		}
		was_full = false;
		if (st != AGENT_STREAM_OK)
			break;
		pos += n;
		if (++slice % AGENT_STREAM_SQL_PROCESS_EVERY == 0 &&
			agent_stream_process(as) != AGENT_STREAM_OK)
			break;
	}
	(void) agent_stream_finish(as);
	agent_stream_result(as, &res);

	snprintf(fallback_id, sizeof(fallback_id), "msg-%016llx",
			 (unsigned long long) hash_bytes_extended((const unsigned char *) data,
													  (int) len, 0));
	values[0] = JsonbPGetDatum(agent_stream_message(as, fallback_id));
	values[1] = BoolGetDatum(res.complete);
	values[2] = BoolGetDatum(res.aborted);
	if (res.error != NULL)
		values[3] = CStringGetTextDatum(res.error);
	else
		nulls[3] = true;
	values[4] = Int32GetDatum(res.chunks);

	InitMaterializedSRF(fcinfo, 0);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	agent_stream_destroy(as);
	return (Datum) 0;
}

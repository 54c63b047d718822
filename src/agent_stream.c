/*-------------------------------------------------------------------------
 *
 * agent_stream.c
 *	  The agent engine's reply-stream parser: the bytes of an agent's
 *	  streamed reply in, UI-message-stream chunks and one compacted
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
 * compacted as the AI SDK's processUIMessageStream does (agent_compact.c).
 * openai: each object is a chat.completion.chunk, translated into the
 * UI-message-stream chunks that say the same thing (agent_openai.c), which
 * are then compacted the same way.  Each object is parsed by
 * agent_json_parse (agent_json.c), which turns what jsonb_in rejects into
 * a message instead of an error.
 *
 * The end.  agent_stream_finish processes what is left.  An incomplete last
 * line or SSE event is used if it parses, and else dropped as a truncation
 * (result.truncated) rather than reported as malformed: a connection cut in
 * the middle of a chunk is a reason to retry, not a broken agent.
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

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "agent_compact.h"
#include "agent_json.h"
#include "agent_openai.h"
#include "agent_stream.h"

/* How the reply is cut into JSON objects */
typedef enum AgentStreamFraming
{
	AGENT_STREAM_FRAMING_UNKNOWN,	/* no non-blank line yet */
	AGENT_STREAM_FRAMING_JSONL,
	AGENT_STREAM_FRAMING_SSE
} AgentStreamFraming;

struct AgentStream
{
	MemoryContext cxt;			/* everything of the stream */
	MemoryContext chunk_cxt;	/* the work on one JSON object */
	AgentStreamProtocol protocol;
	int			max_line;
	int64		max_bytes;

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
	bool		at_eof;			/* finish: the incomplete last line or event */
	bool		truncated;
	bool		done_marker;

	/* the JSON objects go to the translation (openai) or the compactor */
	AgentOpenAI *openai;		/* protocol openai, else NULL */
	AgentCompact compact;		/* also counts the objects (nread) */
};

static void agent_stream_process_lines(AgentStream *as);
static void agent_stream_line(AgentStream *as, const char *line, size_t len);
static bool agent_stream_sse_start(const char *line, size_t len);
static void agent_stream_dispatch(AgentStream *as);
static void agent_stream_object(AgentStream *as, const char *text, size_t len);
static void agent_stream_fail(AgentStream *as, AgentStreamStatus status,
							  const char *fmt,...) pg_attribute_printf(3, 4);


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
	as->cap = (size_t) max_line + 1 + feed_reserve;
	as->buf = palloc(as->cap);
	as->feed_status = AGENT_STREAM_OK;
	as->status = AGENT_STREAM_OK;
	as->framing = AGENT_STREAM_FRAMING_UNKNOWN;
	initStringInfo(&as->event);
	agent_compact_init(&as->compact, cxt, callback, callback_arg);
	if (protocol == AGENT_STREAM_OPENAI)
		as->openai = agent_openai_create(&as->compact);
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
	as->compact.caller_cxt = CurrentMemoryContext;
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
	as->compact.caller_cxt = CurrentMemoryContext;
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
	agent_compact_result(&as->compact, result);
	result->status = as->status;
	result->done_marker = as->done_marker;
	result->truncated = as->truncated;
	result->error = as->failure ? as->failure : result->agent_error;
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
	return agent_compact_message(&as->compact, fallback_id);
}

/*
 * Every message of the reply (a reply may hold several, each from a
 * start to its finish), in the current memory context; see
 * agent_compact_messages for their ids.
 */
Jsonb **
agent_stream_messages(AgentStream *as, const char *fallback_id, int *count)
{
	return agent_compact_messages(&as->compact, fallback_id, count);
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
		if (agent_json_blank(line, len))
			return;
		as->framing = agent_stream_sse_start(line, len) ?
			AGENT_STREAM_FRAMING_SSE : AGENT_STREAM_FRAMING_JSONL;
	}

	if (as->framing == AGENT_STREAM_FRAMING_JSONL)
	{
		if (!agent_json_blank(line, len))
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

	as->compact.nread++;
	oldcxt = MemoryContextSwitchTo(as->chunk_cxt);
	jb = agent_json_parse(text, len, &error);
	if (jb == NULL)
	{
		if (as->at_eof)
			as->truncated = true;	/* cut in the middle of the object */
		else
			agent_stream_fail(as, AGENT_STREAM_MALFORMED,
							  "chunk %d of the reply is not valid JSON: %s",
							  as->compact.nread, error);
	}
	else if (!JB_ROOT_IS_OBJECT(jb))
		agent_stream_fail(as, AGENT_STREAM_MALFORMED,
						  "chunk %d of the reply is not a JSON object",
						  as->compact.nread);
	else
	{
		if (as->protocol == AGENT_STREAM_FLEETLM)
			agent_compact_deliver(&as->compact, jb);
		else
			agent_openai_object(as->openai, jb);
		if (as->compact.failure != NULL)
			agent_stream_fail(as, AGENT_STREAM_MALFORMED, "%s",
							  as->compact.failure);
	}
	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(as->chunk_cxt);
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

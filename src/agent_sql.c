/*-------------------------------------------------------------------------
 *
 * agent_sql.c
 *	  SQL function fleetlm.compact_agent_reply: the agent engine's reply
 *	  parser run over a whole reply, for tests and for debugging an agent.
 *
 * It needs no shared memory and reads no table, so it works without
 * shared_preload_libraries and in any database.
 *
 * src/agent_sql.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "agent_stream.h"
#include "args.h"

/* fleetlm.compact_agent_reply feeds slices of these sizes, in turn */
static const int agent_sql_slices[] = {1, 2, 3, 7, 13, 31, 64};

/* ... with this feed_reserve (the largest slice), processing this often */
#define AGENT_SQL_RESERVE		64
#define AGENT_SQL_PROCESS_EVERY	11

PG_FUNCTION_INFO_V1(fleetlm_compact_agent_reply);

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
	char	   *protocol_name;
	int32		max_line;
	int32		max_bytes;
	char	   *data;
	size_t		len;
	size_t		pos = 0;
	int			slice = 0;
	bool		was_full = false;
	AgentStream *as;
	AgentStreamResult res;
	char		fallback_id[32];
	Jsonb	  **messages;
	int			nmessages;
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};

	args_not_null(fcinfo, 0, "body");
	body = PG_GETARG_TEXT_PP(0);
	protocol_name = args_text(fcinfo, 1, "protocol");
	max_line = args_int32(fcinfo, 2, "max_line");
	max_bytes = args_int32(fcinfo, 3, "max_bytes");
	as = agent_stream_create(agent_stream_protocol(protocol_name), max_line,
							 max_bytes, AGENT_SQL_RESERVE, NULL, NULL);

	data = pg_server_to_any(VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body), PG_UTF8);
	if (data == VARDATA_ANY(body))
		len = VARSIZE_ANY_EXHDR(body);
	else
		len = strlen(data);

	while (pos < len)
	{
		size_t		n = Min((size_t) agent_sql_slices[slice % lengthof(agent_sql_slices)],
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
		if (++slice % AGENT_SQL_PROCESS_EVERY == 0 &&
			agent_stream_process(as) != AGENT_STREAM_OK)
			break;
	}
	(void) agent_stream_finish(as);
	agent_stream_result(as, &res);

	snprintf(fallback_id, sizeof(fallback_id), "msg-%016llx",
			 (unsigned long long) hash_bytes_extended((const unsigned char *) data,
													  (int) len, 0));
	messages = agent_stream_messages(as, fallback_id, &nmessages);
	values[1] = BoolGetDatum(res.complete);
	values[2] = BoolGetDatum(res.aborted);
	if (res.error != NULL)
		values[3] = CStringGetTextDatum(res.error);
	else
		nulls[3] = true;
	values[4] = Int32GetDatum(res.chunks);

	/* one row per message of the reply; the other columns are the reply's */
	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < nmessages; i++)
	{
		values[0] = JsonbPGetDatum(messages[i]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	agent_stream_destroy(as);
	return (Datum) 0;
}

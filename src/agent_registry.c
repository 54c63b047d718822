/*-------------------------------------------------------------------------
 *
 * agent_registry.c
 *	  The agent registry: fleetlm.register_agent, fleetlm.set_agent_status
 *	  and the checks an agent's configuration must pass.
 *
 * This is the first step of the agent engine.  register_agent checks an
 * agent's configuration and stores it in fleetlm.agents; the dispatcher,
 * which will call agents, is not built yet, and is to run the same checks
 * (agent_check_url, agent_check_headers) on what it reads back, since the
 * allowlist may have changed since registration.
 *
 * Every argument is checked before anything is written, so a bad call
 * changes nothing.  The statements run as the extension owner
 * (spi_util.c): fleetlm_admin needs EXECUTE on the functions and nothing
 * else.  Secret values are never stored: secret_headers maps a header to
 * the name of a secret, which the dispatcher is to resolve from
 * server-side configuration.
 *
 * src/agent_registry.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "agent_registry.h"
#include "agent_stream.h"
#include "agent_url.h"
#include "args.h"
#include "dispatch.h"
#include "fleetlm.h"
#include "replica.h"
#include "shmem.h"
#include "spi_util.h"

PG_FUNCTION_INFO_V1(fleetlm_register_agent);
PG_FUNCTION_INFO_V1(fleetlm_set_agent_status);

#define AGENT_NARGS		14		/* arguments of register_agent */

/* Headers fleetlm sets itself; an agent may not set them */
static const char *const agent_reserved_headers[] = {
	"Content-Type", "Content-Length", "Host", "Idempotency-Key",
	"Transfer-Encoding", "Connection"
};

static void agent_check_range(int32 value, const char *name, int32 min, int32 max);
static void agent_check_text(const char *value, const char *name);
static const char *agent_jsonb_type(JsonbValue *v);
static void agent_check_header_name(const char *name, const char *arg,
									char **seen, int nseen);
static int	agent_check_header_object(Jsonb *jb, const char *arg,
									  char **seen, int nseen);

/*
 * An integer argument outside [min, max] is an error naming both.
 */
static void
agent_check_range(int32 value, const char *name, int32 min, int32 max)
{
	if (value < min || value > max)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be between %d and %d: %d",
						name, min, max, value)));
}

/*
 * An optional text argument (name, model), when given, is not empty and
 * at most AGENT_TEXT_MAXLEN bytes.
 */
static void
agent_check_text(const char *value, const char *name)
{
	size_t		len;

	if (value == NULL)
		return;
	len = strlen(value);
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty (pass NULL for none)", name)));
	if (len > AGENT_TEXT_MAXLEN)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("%s is too long (%zu bytes; the limit is %d)",
						name, len, AGENT_TEXT_MAXLEN)));
}

/*
 * Check an agent's URL, origin_url || webhook_path, and parse it into
 * *out: an http or https URL (see agent_url.c) allowed by
 * fleetlm.agent_url_allowlist.  origin_url is scheme, host, optional port
 * and optional path, without query, fragment or a trailing '/';
 * webhook_path starts with '/' and may have a query, not a fragment.
 */
void
agent_check_url(const char *origin_url, const char *webhook_path, AgentUrl *out)
{
	AgentUrl	origin;
	char	   *error;
	char	   *url;
	size_t		olen = strlen(origin_url);
	size_t		wlen = strlen(webhook_path);

	if (olen + wlen > AGENT_URL_MAXLEN)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("the agent URL (origin_url || webhook_path) is too long (%zu bytes; the limit is %d)",
						olen + wlen, AGENT_URL_MAXLEN)));
	if (!agent_url_parse(origin_url, &origin, &error))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("origin_url \"%s\" is not a valid agent URL: %s",
						origin_url, error)));
	if (origin.has_query || origin.has_fragment)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("origin_url \"%s\" must not have a query or a fragment",
						origin_url)));
	if (olen > 0 && origin_url[olen - 1] == '/')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("origin_url \"%s\" must not end with \"/\"", origin_url),
				 errhint("webhook_path, which starts with \"/\", is appended to it.")));
	if (webhook_path[0] != '/')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("webhook_path must start with \"/\": \"%s\"", webhook_path)));

	url = psprintf("%s%s", origin_url, webhook_path);
	if (!agent_url_parse(url, out, &error))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("agent URL \"%s\" (origin_url || webhook_path) is not valid: %s",
						url, error)));
	if (out->has_fragment)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("webhook_path must not have a fragment: \"%s\"", webhook_path)));
	if (!agent_url_allowed(out, fleetlm_agent_url_allowlist ? fleetlm_agent_url_allowlist : ""))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("agent URL \"%s\" is not allowed by fleetlm.agent_url_allowlist", url),
				 errhint("A superuser must add a prefix of it to fleetlm.agent_url_allowlist, e.g. with ALTER SYSTEM, and reload the configuration.")));
}

/*
 * Is `name` an HTTP header name: an RFC 7230 token (1*tchar)?
 */
bool
agent_header_name_valid(const char *name)
{
	if (*name == '\0')
		return false;
	for (const char *p = name; *p; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (!isalnum(c) && strchr("!#$%&'*+-.^_`|~", c) == NULL)
			return false;
		if (c >= 0x80)
			return false;
	}
	return true;
}

/*
 * Is `name` one of the headers fleetlm sets itself?
 */
bool
agent_header_reserved(const char *name)
{
	for (int i = 0; i < lengthof(agent_reserved_headers); i++)
		if (pg_strcasecmp(name, agent_reserved_headers[i]) == 0)
			return true;
	return false;
}

/*
 * Is `name` a secret name: ^[A-Za-z_][A-Za-z0-9_]{0,63}$?
 */
bool
agent_secret_name_valid(const char *name)
{
	size_t		len = strlen(name);

	if (len == 0 || len > 64 || isdigit((unsigned char) name[0]))
		return false;
	for (const char *p = name; *p; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (c >= 0x80 || (!isalnum(c) && c != '_'))
			return false;
	}
	return true;
}

/*
 * The JSON type of a value, for messages.
 */
static const char *
agent_jsonb_type(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "a string";
		case jbvNumeric:
			return "a number";
		case jbvBool:
			return "a boolean";
		default:
			return "an object or an array";
	}
}

/*
 * A header name of `arg` (headers, secret_headers) must be a token, not
 * reserved, and not among seen[0..nseen) (compared case-insensitively).
 */
static void
agent_check_header_name(const char *name, const char *arg, char **seen, int nseen)
{
	if (!agent_header_name_valid(name))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: \"%s\" is not a valid HTTP header name", arg, name),
				 errhint("A header name is a token of letters, digits and !#$%%&'*+-.^_`|~ (RFC 7230).")));
	if (agent_header_reserved(name))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: header \"%s\" is set by fleetlm itself", arg, name),
				 errhint("fleetlm sets Content-Type, Content-Length, Host, Idempotency-Key, Transfer-Encoding and Connection.")));
	for (int i = 0; i < nseen; i++)
		if (pg_strcasecmp(name, seen[i]) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s: header \"%s\" is given twice (as \"%s\"; header names are case-insensitive)",
							arg, name, seen[i])));
}

/*
 * Check one of the header objects; its names are added to seen[nseen..),
 * which has room for AGENT_MAX_HEADERS.  Returns the new nseen.
 *
 * headers: name -> value, a string without control characters other than
 * tab.  secret_headers: name -> the name of a secret.
 */
static int
agent_check_header_object(Jsonb *jb, const char *arg, char **seen, int nseen)
{
	bool		secret = strcmp(arg, "secret_headers") == 0;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *name = NULL;

	args_check_object(jb, arg);
	if (nseen + JsonContainerSize(&jb->root) > AGENT_MAX_HEADERS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("an agent has at most %d headers (headers and secret_headers together): %d",
						AGENT_MAX_HEADERS, nseen + JsonContainerSize(&jb->root))));

	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *value;

		if (tok == WJB_KEY)
		{
			name = pnstrdup(v.val.string.val, v.val.string.len);
			agent_check_header_name(name, arg, seen, nseen);
			continue;
		}
		if (tok != WJB_VALUE)
			continue;
		if (v.type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s: the value of header \"%s\" must be a string, not %s",
							arg, name, agent_jsonb_type(&v))));
		value = pnstrdup(v.val.string.val, v.val.string.len);
		if (secret)
		{
			if (!agent_secret_name_valid(value))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("secret_headers: \"%s\" (for header \"%s\") is not a valid secret name",
								value, name),
						 errhint("A secret name matches ^[A-Za-z_][A-Za-z0-9_]{0,63}$; it names a secret in the server's configuration, and is not the secret itself.")));
		}
		else
		{
			if (v.val.string.len > AGENT_HEADER_VALUE_MAXLEN)
				ereport(ERROR,
						(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
						 errmsg("headers: the value of header \"%s\" is too long (%d bytes; the limit is %d)",
								name, v.val.string.len, AGENT_HEADER_VALUE_MAXLEN)));
			for (int i = 0; i < v.val.string.len; i++)
			{
				unsigned char c = (unsigned char) value[i];

				if ((c < 0x20 && c != '\t') || c == 0x7f)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("headers: the value of header \"%s\" contains a control character (byte 0x%02x at offset %d)",
									name, c, i),
							 errhint("Header values may not contain CR, LF or other control characters other than tab.")));
			}
		}
		seen[nseen++] = name;
	}
	return nseen;
}

/*
 * Check headers and secret_headers: objects of at most AGENT_MAX_HEADERS
 * headers together, each named by a token that is not reserved and given
 * once (case-insensitively, across both).
 */
void
agent_check_headers(Jsonb *headers, Jsonb *secret_headers)
{
	char	   *seen[AGENT_MAX_HEADERS];
	int			nseen;

	nseen = agent_check_header_object(headers, "headers", seen, 0);
	(void) agent_check_header_object(secret_headers, "secret_headers", seen, nseen);
}

/*
 * fleetlm.register_agent(agent_id, origin_url, webhook_path, protocol,
 * history_mode, history_limit, timeout_ms, debounce_ms, max_concurrency,
 * max_attempts, headers, secret_headers, name, model) -> fleetlm.agents
 *
 * Insert the agent, or update every setting of an existing one; an update
 * keeps created_at, status and metadata and sets updated_at.  Returns the
 * stored row.  Nothing is dispatched: the dispatcher is not built yet.
 */
Datum
fleetlm_register_agent(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	char	   *agent_id = args_text(fcinfo, 0, "agent_id");
	char	   *origin_url = args_text(fcinfo, 1, "origin_url");
	char	   *webhook_path = args_text(fcinfo, 2, "webhook_path");
	char	   *protocol = args_text(fcinfo, 3, "protocol");
	char	   *history_mode = args_text(fcinfo, 4, "history_mode");
	int32		history_limit = args_int32(fcinfo, 5, "history_limit");
	int32		timeout_ms = args_int32(fcinfo, 6, "timeout_ms");
	int32		debounce_ms = args_int32(fcinfo, 7, "debounce_ms");
	int32		max_concurrency = args_int32(fcinfo, 8, "max_concurrency");
	int32		max_attempts = args_int32(fcinfo, 9, "max_attempts");
	Jsonb	   *headers = args_jsonb(fcinfo, 10, "headers");
	Jsonb	   *secret_headers = args_jsonb(fcinfo, 11, "secret_headers");
	char	   *name = args_text_or_null(fcinfo, 12);
	char	   *model = args_text_or_null(fcinfo, 13);
	Oid			argtypes[AGENT_NARGS] = {
		TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT4OID, INT4OID,
		INT4OID, INT4OID, INT4OID, JSONBOID, JSONBOID, TEXTOID, TEXTOID
	};
	Datum		values[AGENT_NARGS];
	char		nulls[AGENT_NARGS];
	AgentUrl	url;
	TupleDesc	desc;
	Datum	   *row;
	bool	   *rownulls;
	HeapTuple	result;
	MemoryContext cxt = CurrentMemoryContext;
	FleetSpiContext spi;
	int			ret;

	fleetlm_require_primary("register_agent");
	fleetlm_require_shmem();
	fleetlm_require_database();

	args_check_id(agent_id, "agent_id");
	agent_check_url(origin_url, webhook_path, &url);
	if (agent_stream_protocol(protocol) == AGENT_STREAM_OPENAI && model == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("protocol \"openai\" needs a model"),
				 errhint("The request body of an OpenAI-compatible endpoint names the model.")));
	if (strcmp(history_mode, "tail") != 0 && strcmp(history_mode, "last") != 0 &&
		strcmp(history_mode, "entire") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("history_mode must be \"tail\", \"last\" or \"entire\": \"%s\"",
						history_mode)));
	agent_check_range(history_limit, "history_limit",
					  AGENT_HISTORY_LIMIT_MIN, AGENT_HISTORY_LIMIT_MAX);
	agent_check_range(timeout_ms, "timeout_ms",
					  AGENT_TIMEOUT_MS_MIN, AGENT_TIMEOUT_MS_MAX);
	agent_check_range(debounce_ms, "debounce_ms",
					  AGENT_DEBOUNCE_MS_MIN, AGENT_DEBOUNCE_MS_MAX);
	agent_check_range(max_concurrency, "max_concurrency",
					  AGENT_CONCURRENCY_MIN, AGENT_CONCURRENCY_MAX);
	agent_check_range(max_attempts, "max_attempts",
					  AGENT_ATTEMPTS_MIN, AGENT_ATTEMPTS_MAX);
	agent_check_headers(headers, secret_headers);
	agent_check_text(name, "name");
	agent_check_text(model, "model");

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	desc = BlessTupleDesc(desc);

	values[0] = CStringGetTextDatum(agent_id);
	values[1] = CStringGetTextDatum(origin_url);
	values[2] = CStringGetTextDatum(webhook_path);
	values[3] = CStringGetTextDatum(protocol);
	values[4] = CStringGetTextDatum(history_mode);
	values[5] = Int32GetDatum(history_limit);
	values[6] = Int32GetDatum(timeout_ms);
	values[7] = Int32GetDatum(debounce_ms);
	values[8] = Int32GetDatum(max_concurrency);
	values[9] = Int32GetDatum(max_attempts);
	values[10] = JsonbPGetDatum(headers);
	values[11] = JsonbPGetDatum(secret_headers);
	values[12] = name ? CStringGetTextDatum(name) : (Datum) 0;
	values[13] = model ? CStringGetTextDatum(model) : (Datum) 0;
	memset(nulls, ' ', sizeof(nulls));
	nulls[12] = name ? ' ' : 'n';
	nulls[13] = model ? ' ' : 'n';

	fleet_spi_connect(&spi);
	plan = fleet_spi_plan(&plan,
						  "INSERT INTO fleetlm.agents AS a"
						  " (agent_id, origin_url, webhook_path, protocol, history_mode,"
						  "  history_limit, timeout_ms, debounce_ms, max_concurrency,"
						  "  max_attempts, headers, secret_headers, name, model)"
						  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
						  " ON CONFLICT (agent_id) DO UPDATE SET"
						  "  origin_url = excluded.origin_url,"
						  "  webhook_path = excluded.webhook_path,"
						  "  protocol = excluded.protocol,"
						  "  history_mode = excluded.history_mode,"
						  "  history_limit = excluded.history_limit,"
						  "  timeout_ms = excluded.timeout_ms,"
						  "  debounce_ms = excluded.debounce_ms,"
						  "  max_concurrency = excluded.max_concurrency,"
						  "  max_attempts = excluded.max_attempts,"
						  "  headers = excluded.headers,"
						  "  secret_headers = excluded.secret_headers,"
						  "  name = excluded.name,"
						  "  model = excluded.model,"
						  "  updated_at = pg_catalog.now()"
						  " RETURNING a.*",
						  AGENT_NARGS, argtypes);
	ret = SPI_execute_plan(plan, values, nulls, false, 0);
	if (ret != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
		elog(ERROR, "fleetlm: upsert into fleetlm.agents failed: %s",
			 SPI_result_code_string(ret));
	if (SPI_tuptable->tupdesc->natts != desc->natts)
		elog(ERROR, "fleetlm.agents has %d columns, register_agent returns %d",
			 SPI_tuptable->tupdesc->natts, desc->natts);

	/* copy the row out of SPI's memory: heap_form_tuple flattens it */
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);

		row = palloc(desc->natts * sizeof(Datum));
		rownulls = palloc(desc->natts * sizeof(bool));
		heap_deform_tuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, row, rownulls);
		result = heap_form_tuple(desc, row, rownulls);
		MemoryContextSwitchTo(old);
	}
	fleet_spi_finish(&spi);
	dispatch_agents_changed();

	PG_RETURN_DATUM(HeapTupleGetDatum(result));
}

/*
 * fleetlm.set_agent_status(agent_id, status) -> void
 *
 * status is "enabled" or "disabled".  An unknown agent is P0002.
 */
Datum
fleetlm_set_agent_status(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	char	   *agent_id = args_text(fcinfo, 0, "agent_id");
	char	   *status = args_text(fcinfo, 1, "status");
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	FleetSpiContext spi;
	int			ret;

	fleetlm_require_primary("set_agent_status");
	fleetlm_require_shmem();
	fleetlm_require_database();
	args_check_id(agent_id, "agent_id");
	if (strcmp(status, "enabled") != 0 && strcmp(status, "disabled") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("status must be \"enabled\" or \"disabled\": \"%s\"", status)));

	fleet_spi_connect(&spi);
	plan = fleet_spi_plan(&plan,
						  "UPDATE fleetlm.agents SET status = $2, updated_at = pg_catalog.now()"
						  " WHERE agent_id OPERATOR(pg_catalog.=) $1",
						  2, argtypes);
	values[0] = CStringGetTextDatum(agent_id);
	values[1] = CStringGetTextDatum(status);
	ret = SPI_execute_plan(plan, values, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "fleetlm: update of fleetlm.agents failed: %s",
			 SPI_result_code_string(ret));
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_NO_DATA_FOUND),
				 errmsg("fleetlm agent \"%s\" does not exist", agent_id)));
	fleet_spi_finish(&spi);
	dispatch_agents_changed();

	PG_RETURN_VOID();
}

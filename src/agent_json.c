/*-------------------------------------------------------------------------
 *
 * agent_json.c
 *	  JSON for the agent engine's reply parser: agent-provided text parsed
 *	  into jsonb without raising errors about it, fields read, chunks and
 *	  parts built.
 *
 * Parsing.  A chunk is parsed with jsonb_in.  Its syntax errors, and the
 * few other data errors it raises (a number out of range, \u0000, nesting
 * deeper than the stack allows), are caught and returned as a message, so
 * that the caller can make them a MALFORMED status.  They are caught
 * without a subtransaction, which is safe because jsonb_in only computes:
 * it takes no lock, pins no buffer, opens no file, and what it allocated
 * lives in the caller's per-chunk context, reset after each chunk.  Any
 * other error is thrown on.
 *
 * src/agent_json.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"

#include "agent_json.h"

/*
 * Parse UTF-8 text as jsonb, in the current memory context.  Returns NULL
 * and sets *error if jsonb_in rejects it: a data exception, or a nesting
 * too deep for the stack.  Other errors propagate.  See the file header
 * for why catching here is safe.
 */
Jsonb *
agent_json_parse(const char *text, size_t len, char **error)
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
 * Whether s holds only blanks (spaces, tabs, CRs).
 */
bool
agent_json_blank(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
			return false;
	return true;
}

/*
 * The value of key in an object container, or NULL if it has none.
 */
JsonbValue *
agent_json_get(JsonbContainer *obj, const char *key, JsonbValue *buf)
{
	return getKeyJsonValueFromContainer(obj, key, strlen(key), buf);
}

/*
 * Whether a value is a JSON object.
 */
bool
agent_json_is_object(JsonbValue *v)
{
	return v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data);
}

/*
 * The next key and value of the object an iterator walks (its nested
 * containers not entered); false at its end.
 */
bool
agent_json_next_field(JsonbIterator **it, JsonbValue *key, JsonbValue *value)
{
	JsonbIteratorToken tok;

	while ((tok = JsonbIteratorNext(it, key, true)) != WJB_DONE)
	{
		if (tok != WJB_KEY)
			continue;
		(void) JsonbIteratorNext(it, value, true);
		return true;
	}
	return false;
}

/*
 * Push an object key.
 */
void
agent_json_push_key(JsonbParseState **ps, const char *key)
{
	agent_json_push_string(ps, WJB_KEY, key, strlen(key));
}

/*
 * Push a string as a key, value or element.
 */
void
agent_json_push_string(JsonbParseState **ps, JsonbIteratorToken tok,
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
void
agent_json_push_kv(JsonbParseState **ps, const char *key, const char *value)
{
	agent_json_push_key(ps, key);
	agent_json_push_string(ps, WJB_VALUE, value, strlen(value));
}

/*
 * Push a stored jsonb value (a scalar or a container) as a value or
 * element.
 */
void
agent_json_push_jsonb(JsonbParseState **ps, JsonbIteratorToken tok,
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
 * Push a key and a stored jsonb value, unless the value is NULL (absent).
 */
void
agent_json_push_field(JsonbParseState **ps, const char *key, Jsonb *jb)
{
	if (jb == NULL)
		return;
	agent_json_push_key(ps, key);
	agent_json_push_jsonb(ps, WJB_VALUE, jb);
}

/*-------------------------------------------------------------------------
 *
 * args.c
 *	  Arguments of fleetlm's SQL functions: fetching them with NULL checks
 *	  that name the argument, and the checks ids and messages must pass.
 *
 * The functions are declared without STRICT so that a NULL argument gets
 * an error naming it rather than a silent NULL result; every argument that
 * must not be NULL is fetched through here.
 *
 * src/args.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"

#include "args.h"
#include "fleetlm.h"

/*
 * A NULL argument is an error naming it.
 */
void
args_not_null(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", name)));
}

/*
 * A text argument as a C string; NULL is an error naming the argument.
 */
char *
args_text(FunctionCallInfo fcinfo, int argno, const char *name)
{
	args_not_null(fcinfo, argno, name);
	return text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

/*
 * An optional text argument as a C string, or NULL if it is NULL or was
 * not passed.
 */
char *
args_text_or_null(FunctionCallInfo fcinfo, int argno)
{
	if (PG_NARGS() <= argno || PG_ARGISNULL(argno))
		return NULL;
	return text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

/*
 * Integer arguments; NULL is an error naming the argument.
 */
int64
args_int64(FunctionCallInfo fcinfo, int argno, const char *name)
{
	args_not_null(fcinfo, argno, name);
	return PG_GETARG_INT64(argno);
}

int32
args_int32(FunctionCallInfo fcinfo, int argno, const char *name)
{
	args_not_null(fcinfo, argno, name);
	return PG_GETARG_INT32(argno);
}

/*
 * A jsonb argument, detoasted; NULL is an error naming the argument.
 */
Jsonb *
args_jsonb(FunctionCallInfo fcinfo, int argno, const char *name)
{
	args_not_null(fcinfo, argno, name);
	return PG_GETARG_JSONB_P(argno);
}

/*
 * Reject an id (session, user, agent, sender, kind) that is empty or too
 * long to be a session table key.  `name` names the argument in the
 * message.
 */
void
args_check_id(const char *id, const char *name)
{
	size_t		len = strlen(id);

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", name)));
	if (len > FLEETLM_ID_MAXLEN)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("%s is too long (%zu bytes; the limit is %d)",
						name, len, FLEETLM_ID_MAXLEN)));
}

/*
 * Reject a jsonb value that is not an object (metadata must be one).
 */
void
args_check_object(Jsonb *jb, const char *name)
{
	if (!JB_ROOT_IS_OBJECT(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a JSON object, not %s", name,
						JB_ROOT_IS_SCALAR(jb) ? "a scalar" : "an array")));
}

/*
 * The checks every message passes, whether it comes alone (append) or in
 * a batch (append_batch): a valid kind, metadata that is an object, and
 * content and metadata within fleetlm.max_message_size.
 */
void
args_check_message(const char *kind, Jsonb *content, Jsonb *metadata)
{
	Size		size;

	args_check_id(kind, "kind");
	args_check_object(metadata, "metadata");
	size = VARSIZE(content) + VARSIZE(metadata);
	if (size > FLEETLM_MAX_MESSAGE_SIZE)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("fleetlm message is too large (%zu bytes of content and metadata; fleetlm.max_message_size is %d kB)",
						size, fleetlm_max_message_size_kb)));
}

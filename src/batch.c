/*-------------------------------------------------------------------------
 *
 * batch.c
 *	  The messages argument of append_batch, checked and turned into
 *	  record inputs.
 *
 * The argument is a JSON array of 1..BATCH_MAX_MESSAGES objects, each with
 * "kind" (a string), "content" (any JSON) and optionally "metadata" (an
 * object), and no other keys.  Every message passes the checks of a single
 * append (args_check_message), and all of them together stay within
 * fleetlm.max_message_size.  An error about one message names it: in its
 * text, or, for the checks of a single append, in a context line.
 *
 * src/batch.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "args.h"
#include "batch.h"
#include "fleetlm.h"

/* Most messages in one append_batch() */
#define BATCH_MAX_MESSAGES	1000

static void batch_error_context(void *arg);

/*
 * Turn the messages argument of append_batch into record inputs (type,
 * kind, content and metadata set; the caller fills in the rest) in a
 * palloc'd array *out.  Returns the count.
 */
int
batch_parse(Jsonb *batch, FleetRecordInput **out)
{
	int			n;
	Size		total = 0;
	FleetRecordInput *inputs;
	ErrorContextCallback errcb;
	int			elemno;
	Jsonb	   *empty = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));

	if (!JB_ROOT_IS_ARRAY(batch) || JB_ROOT_IS_SCALAR(batch))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("messages must be a JSON array of message objects")));
	n = JB_ROOT_COUNT(batch);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("messages must not be an empty array")));
	if (n > BATCH_MAX_MESSAGES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many messages in one batch (%d; the limit is %d)",
						n, BATCH_MAX_MESSAGES)));

	inputs = palloc0(n * sizeof(FleetRecordInput));
	elemno = 0;
	errcb.callback = batch_error_context;
	errcb.arg = &elemno;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	for (int i = 0; i < n; i++)
	{
		JsonbValue *elem = getIthJsonbValueFromContainer(&batch->root, i);
		JsonbContainer *obj;
		JsonbValue	v;
		int			nkeys = 0;
		char	   *kind;

		if (elem->type != jbvBinary || !JsonContainerIsObject(elem->val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("element %d of messages is not a JSON object", i + 1)));
		obj = elem->val.binary.data;

		if (getKeyJsonValueFromContainer(obj, "kind", 4, &v) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("element %d of messages has no \"kind\"", i + 1)));
		if (v.type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("\"kind\" of element %d of messages must be a string", i + 1)));
		kind = pnstrdup(v.val.string.val, v.val.string.len);
		nkeys++;

		if (getKeyJsonValueFromContainer(obj, "content", 7, &v) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("element %d of messages has no \"content\"", i + 1)));
		inputs[i].content = JsonbValueToJsonb(&v);
		nkeys++;

		if (getKeyJsonValueFromContainer(obj, "metadata", 8, &v) != NULL)
		{
			inputs[i].metadata = JsonbValueToJsonb(&v);
			nkeys++;
		}
		else
			inputs[i].metadata = empty;

		if (JsonContainerSize(obj) != nkeys)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("element %d of messages has keys other than \"kind\", \"content\" and \"metadata\"", i + 1)));

		elemno = i + 1;
		args_check_message(kind, inputs[i].content, inputs[i].metadata);
		elemno = 0;
		inputs[i].type = FLEET_REC_APPEND;
		inputs[i].kind = kind;
		total += VARSIZE(inputs[i].content) + VARSIZE(inputs[i].metadata);
	}
	error_context_stack = errcb.previous;
	if (total > FLEETLM_MAX_MESSAGE_SIZE)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("fleetlm batch is too large (%zu bytes of content and metadata; fleetlm.max_message_size is %d kB)",
						total, fleetlm_max_message_size_kb)));
	*out = inputs;
	return n;
}

/*
 * Error context: which message of the batch failed its checks.
 */
static void
batch_error_context(void *arg)
{
	int			elemno = *(int *) arg;

	if (elemno > 0)
		errcontext("element %d of messages", elemno);
}

/*-------------------------------------------------------------------------
 *
 * args.h
 *	  Arguments of fleetlm's SQL functions: fetching them with NULL checks
 *	  that name the argument, and the checks ids and messages must pass.
 *
 * src/args.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_ARGS_H
#define FLEETLM_ARGS_H

#include "fmgr.h"
#include "utils/jsonb.h"

extern void args_not_null(FunctionCallInfo fcinfo, int argno, const char *name);
extern char *args_text(FunctionCallInfo fcinfo, int argno, const char *name);
extern char *args_text_or_null(FunctionCallInfo fcinfo, int argno);
extern int64 args_int64(FunctionCallInfo fcinfo, int argno, const char *name);
extern int32 args_int32(FunctionCallInfo fcinfo, int argno, const char *name);
extern Jsonb *args_jsonb(FunctionCallInfo fcinfo, int argno, const char *name);

extern void args_check_id(const char *id, const char *name);
extern void args_check_object(Jsonb *jb, const char *name);
extern void args_check_message(const char *kind, Jsonb *content, Jsonb *metadata);

#endif							/* FLEETLM_ARGS_H */

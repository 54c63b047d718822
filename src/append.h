/*-------------------------------------------------------------------------
 *
 * append.h
 *	  The append path: argument checks, seq assignment, ring insertion and
 *	  the wait for durability.
 *
 * src/append.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_APPEND_H
#define FLEETLM_APPEND_H

#include "fmgr.h"
#include "utils/jsonb.h"

extern char *fleet_arg_text(FunctionCallInfo fcinfo, int argno, const char *name);
extern int64 fleet_arg_int64(FunctionCallInfo fcinfo, int argno, const char *name);
extern int32 fleet_arg_int32(FunctionCallInfo fcinfo, int argno, const char *name);
extern Jsonb *fleet_arg_jsonb(FunctionCallInfo fcinfo, int argno, const char *name);
extern void fleet_check_object(Jsonb *jb, const char *name);
extern void fleet_read_own_writes(void);

#endif							/* FLEETLM_APPEND_H */

/*-------------------------------------------------------------------------
 *
 * dispatch_history.h
 *	  The dispatcher's cache of recent messages, rendered for the fleetlm
 *	  protocol's request body.
 *
 * src/dispatch_history.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_DISPATCH_HISTORY_H
#define FLEETLM_DISPATCH_HISTORY_H

#include "lib/stringinfo.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

extern void history_render(StringInfo out, int64 seq, const char *sender,
						   const char *kind, Jsonb *content, Jsonb *metadata,
						   TimestampTz inserted_at);
extern bool history_build(const char *session_id, int64 first, int64 last,
						  StringInfo out);
extern void history_begin(const char *session_id, int cap, int64 first);
extern void history_add(const char *session_id, int64 seq, const char *frag,
						int len);
extern bool history_wanted(const char *session_id);
extern void history_forget(const char *session_id);

#endif							/* FLEETLM_DISPATCH_HISTORY_H */

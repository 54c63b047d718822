/*-------------------------------------------------------------------------
 *
 * append.h
 *	  The write path of the log: seq assignment, ring insertion and the
 *	  wait for durability (see append.c).
 *
 * src/append.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_APPEND_H
#define FLEETLM_APPEND_H

#include "record.h"

extern void append_read_own_writes(void);
extern int64 append_group_async(const char *session_id, const char *sender_id,
								FleetRecordInput *inputs, int n,
								const char *key, int64 key_after,
								bool *duplicate, uint64 *unflushed);

#endif							/* FLEETLM_APPEND_H */

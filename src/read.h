/*-------------------------------------------------------------------------
 *
 * read.h
 *	  The read path: messages of a session from the table and, for what
 *	  the applier has not moved yet, from the ring.
 *
 * src/read.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_READ_H
#define FLEETLM_READ_H

#include "access/tupdesc.h"
#include "utils/tuplestore.h"

extern int64 read_messages(const char *session_id, int64 after_seq, int32 max_count,
						   Tuplestorestate *store, TupleDesc desc);
extern int64 read_last_seq(const char *session_id);
extern void read_check_range(int64 after_seq, int32 max_count);

#endif							/* FLEETLM_READ_H */

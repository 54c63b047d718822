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
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

extern int64 read_messages(const char *session_id, int64 after_seq, int32 max_count,
						   Tuplestorestate *store, TupleDesc desc);
extern int64 read_last_seq(const char *session_id);
extern void read_check_range(int64 after_seq, int32 max_count);

/* What the session table knows of a session beyond the tables */
typedef struct SessionTail
{
	bool		deleted;		/* a deletion is pending */
	int64		last_seq;		/* last durable seq */
	bool		in_ring;		/* the newest durable message is in the ring: */
	TimestampTz last_at;		/* its time */
	char	   *last_sender;	/* and sender (palloc'd) */
} SessionTail;

extern bool read_session_tail(const char *session_id, SessionTail *tail);

#endif							/* FLEETLM_READ_H */

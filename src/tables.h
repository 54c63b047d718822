/*-------------------------------------------------------------------------
 *
 * tables.h
 *	  Direct reads of fleetlm.sessions and fleetlm.messages through their
 *	  primary-key indexes, without SPI and without the executor: the miss
 *	  path of the session table and the table part of a read.
 *
 * src/tables.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_TABLES_H
#define FLEETLM_TABLES_H

#include "utils/snapshot.h"
#include "utils/tuplestore.h"

#include "fleetlm.h"

/* What tables_session_info found of a session */
typedef struct TablesSession
{
	char		user_id[FLEETLM_ID_MAXLEN + 1];
	char		agent_id[FLEETLM_ID_MAXLEN + 1];
	TransactionId xmin;			/* of the session's row */
	int64		last_seq;		/* largest seq in fleetlm.messages, 0: none */
} TablesSession;

extern bool tables_session_info(const char *session_id, Snapshot snapshot,
								TablesSession *out);
extern bool tables_read_messages(const char *session_id, int64 after_seq,
								 int32 max_count, Snapshot snapshot,
								 Tuplestorestate *store, int64 *count);

#endif							/* FLEETLM_TABLES_H */

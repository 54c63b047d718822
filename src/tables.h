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

#include "session.h"

extern bool tables_session_info(const char *session_id, Snapshot snapshot,
								FleetSessionInfo *out, TransactionId *xmin);
extern bool tables_read_messages(const char *session_id, int64 after_seq,
								 int32 max_count, Snapshot snapshot,
								 Tuplestorestate *store, int64 *count);

#endif							/* FLEETLM_TABLES_H */

/*-------------------------------------------------------------------------
 *
 * idempotency.h
 *	  Idempotency keys of appends: finding an earlier message of a session
 *	  with the same key, in the table or in the ring.
 *
 * src/idempotency.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_IDEMPOTENCY_H
#define FLEETLM_IDEMPOTENCY_H

#include "session.h"

extern void idempotency_check_key(const char *key);
extern int64 idempotency_find_in_table(const char *session_id, const char *key,
									   uint64 *applied);
extern int	idempotency_find_in_ring_after(FleetSession *entry, const char *key,
										   int64 after_seq, int64 *seq,
										   uint64 *end, bool *complete);
extern int	idempotency_find_in_ring(FleetSession *entry, const char *key,
									 uint64 applied, int64 *seq, uint64 *end);

#endif							/* FLEETLM_IDEMPOTENCY_H */

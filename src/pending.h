/*-------------------------------------------------------------------------
 *
 * pending.h
 *	  fleetlm.pending_turns, kept by the applier in the transaction of each
 *	  batch.
 *
 * src/pending.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_PENDING_H
#define FLEETLM_PENDING_H

#include "record.h"

extern void pending_begin(void);
extern void pending_note(FleetRecord *rec);
extern void pending_flush(void);

#endif							/* FLEETLM_PENDING_H */

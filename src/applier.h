/*-------------------------------------------------------------------------
 *
 * applier.h
 *	  The fleetlm applier background worker: recovery (recovery.c), then
 *	  moving durable records into fleetlm.messages.
 *
 * applier_apply_until and applier_set_state are for recovery.c, which runs
 * in the applier before READY.
 *
 * src/applier.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_APPLIER_H
#define FLEETLM_APPLIER_H

#include "shmem.h"

extern void applier_register(void);
extern void applier_wake(void);
extern void applier_apply_until(uint64 target);
extern void applier_set_state(FleetState state);

#endif							/* FLEETLM_APPLIER_H */

/*-------------------------------------------------------------------------
 *
 * applier.h
 *	  The fleetlm applier background worker: recovery, then moving durable
 *	  records into fleetlm.messages.
 *
 * src/applier.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_APPLIER_H
#define FLEETLM_APPLIER_H

extern void applier_register(void);
extern void applier_wake(void);

#endif							/* FLEETLM_APPLIER_H */

/*-------------------------------------------------------------------------
 *
 * recovery.h
 *	  Recovery of the fleetlm WAL, run by the applier at every start before
 *	  appends are accepted.
 *
 * src/recovery.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_RECOVERY_H
#define FLEETLM_RECOVERY_H

extern void recovery_run(void);

#endif							/* FLEETLM_RECOVERY_H */

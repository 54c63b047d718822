/*-------------------------------------------------------------------------
 *
 * applywait.h
 *	  Backends waiting for the applier, without a deadlock nobody sees.
 *
 * src/applywait.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_APPLYWAIT_H
#define FLEETLM_APPLYWAIT_H

extern void applywait_applied(uint64 target, const char *what);
extern void applywait_space(Size len);

#endif							/* FLEETLM_APPLYWAIT_H */

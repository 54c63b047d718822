/*-------------------------------------------------------------------------
 *
 * walwriter.h
 *	  Flush rounds of the fleetlm WAL and the WAL writer background worker.
 *
 * src/walwriter.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_WALWRITER_H
#define FLEETLM_WALWRITER_H

extern void walwriter_register(void);
extern void walwriter_wake(void);
extern bool walwriter_flush_for(uint64 end, bool nothrow);

#endif							/* FLEETLM_WALWRITER_H */

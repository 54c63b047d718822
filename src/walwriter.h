/*-------------------------------------------------------------------------
 *
 * walwriter.h
 *	  The fleetlm WAL writer background worker.
 *
 * src/walwriter.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_WALWRITER_H
#define FLEETLM_WALWRITER_H

extern void walwriter_register(void);
extern void walwriter_wake(void);
extern bool walwriter_flush_for(uint64 end, bool stop_on_die);

#endif							/* FLEETLM_WALWRITER_H */

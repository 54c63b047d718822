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

#include "datatype/timestamp.h"

extern void walwriter_register(void);
extern void walwriter_wake(void);
extern bool walwriter_flush_for(uint64 end, bool nothrow);
extern bool walwriter_flush_until(uint64 end, bool nothrow, TimestampTz deadline);

#endif							/* FLEETLM_WALWRITER_H */

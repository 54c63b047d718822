/*-------------------------------------------------------------------------
 *
 * ring.h
 *	  The shared ring buffer that holds log records from insertion until the
 *	  applier has moved them into tables.
 *
 * A record at position lsn lives at ring offset lsn % ring_size and may
 * wrap around the end.  Callers guarantee the bytes they touch are live and
 * stable: writers write only space they reserved under insert_lock; readers
 * read only [applied, inserted) while `applied` cannot move (the applier
 * itself, or a holder of reclaim_lock).
 *
 * src/ring.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_RING_H
#define FLEETLM_RING_H

#include "record.h"

extern void ring_prepare(uint64 lsn, Size len);
extern void ring_write(uint64 lsn, const char *src, Size len);
extern void ring_read(uint64 lsn, char *dst, Size len);
extern char *ring_read_record(uint64 lsn);
extern void ring_read_header(uint64 lsn, FleetRecordHeader *hdr);

#endif							/* FLEETLM_RING_H */

/*-------------------------------------------------------------------------
 *
 * ring.c
 *	  Copying bytes into and out of the shared ring, across its wrap point.
 *
 * See ring.h for who may touch which bytes; nothing here takes a lock.
 *
 * src/ring.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fleetlm.h"
#include "ring.h"
#include "shmem.h"

/*
 * Copy len bytes to the ring at log position lsn.
 */
void
ring_write(uint64 lsn, const char *src, Size len)
{
	uint64		size = fleet_shared->ring_size;
	uint64		off = lsn % size;
	Size		first = (Size) Min((uint64) len, size - off);

	Assert(len <= size);
	memcpy(fleet_ring + off, src, first);
	if (first < len)
		memcpy(fleet_ring, src + first, len - first);
}

/*
 * Copy len bytes at log position lsn out of the ring.
 */
void
ring_read(uint64 lsn, char *dst, Size len)
{
	uint64		size = fleet_shared->ring_size;
	uint64		off = lsn % size;
	Size		first = (Size) Min((uint64) len, size - off);

	Assert(len <= size);
	memcpy(dst, fleet_ring + off, first);
	if (first < len)
		memcpy(dst + first, fleet_ring, len - first);
}

void
ring_read_header(uint64 lsn, FleetRecordHeader *hdr)
{
	ring_read(lsn, (char *) hdr, sizeof(FleetRecordHeader));
}

/*
 * A palloc'd, MAXALIGNed copy of the complete record at lsn.  The record
 * must be live (see ring.h); its header is trusted.
 */
char *
ring_read_record(uint64 lsn)
{
	FleetRecordHeader hdr;
	char	   *rec;

	ring_read_header(lsn, &hdr);
	Assert(hdr.lsn == lsn);
	rec = palloc(FLEET_REC_ALIGN(hdr.total_len));
	ring_read(lsn, rec, hdr.total_len);
	return rec;
}

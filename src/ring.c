/*-------------------------------------------------------------------------
 *
 * ring.c
 *	  Copying bytes into and out of the shared ring, across its wrap point.
 *
 * See ring.h for who may touch which bytes; nothing here takes a lock.
 *
 * Page tables.  A process maps a page of shared memory on its first touch
 * of it: one page fault per 4 kB page.  Appends write at the head of the
 * ring, so a fresh backend keeps faulting until the head has swept the
 * whole ring (fleetlm.wal_buffers, 16 MB by default: 4,096 pages).  A
 * fault costs ~12 us on the virtual machines we measured on; without them
 * a 32-client append benchmark ran 30% faster.  So a process maps
 * the ring 1 MB at a time, on its first touch of each megabyte, with one
 * madvise(MADV_POPULATE_WRITE): ~0.5 us a page instead (bench/README.md).
 * The pages' contents are not touched.
 *
 * src/ring.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/mman.h>
#include <unistd.h>

#include "miscadmin.h"
#include "utils/memutils.h"

#include "compat.h"
#include "fleetlm.h"
#include "ring.h"
#include "shmem.h"

#define RING_MAP_CHUNK	((uint64) 1024 * 1024)

/* which 1 MB chunks of the ring this process has mapped, and for which pid */
static bool *ring_mapped = NULL;
static int	ring_mapped_pid = 0;

static void ring_map_chunk(uint64 chunk);

/*
 * Map ring bytes [off, off + len) (offsets, not positions; no wrap) into
 * this process's page tables if they are not yet.
 */
static inline void
ring_map(uint64 off, Size len)
{
	uint64		first = off / RING_MAP_CHUNK;
	uint64		last = (off + len - 1) / RING_MAP_CHUNK;

	if (len == 0)
		return;
	/* a child inherits the variables, not the page tables */
	if (unlikely(ring_mapped_pid != MyProcPid))
	{
		ring_mapped = MemoryContextAllocZero(TopMemoryContext,
											 fleet_shared->ring_size / RING_MAP_CHUNK + 1);
		ring_mapped_pid = MyProcPid;
	}
	for (uint64 c = first; c <= last; c++)
		if (unlikely(!ring_mapped[c]))
			ring_map_chunk(c);
}

/*
 * Populate the page tables for one chunk.  Failure (a kernel before 5.14)
 * only means the pages fault in one by one, as they would anyway.
 */
static void
ring_map_chunk(uint64 chunk)
{
#ifdef FLEETLM_HAVE_MADV_POPULATE_WRITE
	uintptr_t	page = (uintptr_t) sysconf(_SC_PAGESIZE);
	uint64		end_off = Min((chunk + 1) * RING_MAP_CHUNK, fleet_shared->ring_size);
	uintptr_t	start = (uintptr_t) (fleet_ring + chunk * RING_MAP_CHUNK);
	uintptr_t	end = (uintptr_t) (fleet_ring + end_off);

	/* whole pages: the ones at the edges belong to the same shared mapping */
	start &= ~(page - 1);
	end = (end + page - 1) & ~(page - 1);
	(void) madvise((void *) start, end - start, MADV_POPULATE_WRITE);
#endif
	ring_mapped[chunk] = true;
}

/*
 * Prepare this process to touch ring positions [lsn, lsn + len), across
 * the wrap point.  For code that reads the ring directly (the WAL writer's
 * pwrite); ring_write and ring_read do it themselves.
 */
void
ring_prepare(uint64 lsn, Size len)
{
	uint64		size = fleet_shared->ring_size;
	uint64		off = lsn % size;
	Size		first = (Size) Min((uint64) len, size - off);

	ring_map(off, first);
	if (first < len)
		ring_map(0, len - first);
}

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
	ring_map(off, first);
	memcpy(fleet_ring + off, src, first);
	if (first < len)
	{
		ring_map(0, len - first);
		memcpy(fleet_ring, src + first, len - first);
	}
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
	ring_map(off, first);
	memcpy(dst, fleet_ring + off, first);
	if (first < len)
	{
		ring_map(0, len - first);
		memcpy(dst + first, fleet_ring, len - first);
	}
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

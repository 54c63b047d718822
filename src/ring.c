/*-------------------------------------------------------------------------
 *
 * ring.c
 *	  Copying bytes into and out of the shared ring, across its wrap point,
 *	  and walking a session's chain of records through it.
 *
 * See ring.h for who may touch which bytes.  Only the chain walk takes a
 * lock (reclaim_lock, shared, from ring_chain_begin to ring_chain_end).
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
#include "storage/lwlock.h"
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

/*
 * Start a walk of a session's records at the newest, last_lsn (0: the
 * session has none), and hold the ring still until ring_chain_end.  Every
 * walk of the session chain goes through here, so that none forgets the
 * lock or reads `applied` outside it.
 */
void
ring_chain_begin(RingChain *chain, uint64 last_lsn)
{
	LWLockAcquire(fleet_shared->reclaim_lock, LW_SHARED);
	chain->applied = fleet_read_pos(&fleet_shared->applied);
	chain->durable = fleet_read_pos(&fleet_shared->durable);
	chain->next = last_lsn;
}

/*
 * The next record of the walk, one older than the last: its position in
 * *lsn, its header in *hdr.  Returns false once the chain ends or leaves
 * the ring.
 */
bool
ring_chain_next(RingChain *chain, uint64 *lsn, FleetRecordHeader *hdr)
{
	if (!ring_record_live(chain->next, chain->applied))
		return false;
	*lsn = chain->next;
	ring_read_header(*lsn, hdr);
	chain->next = hdr->prev_lsn;
	return true;
}

/*
 * End a walk: the applier may recycle the records again.
 */
void
ring_chain_end(RingChain *chain)
{
	LWLockRelease(fleet_shared->reclaim_lock);
}

/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  Differences between the PostgreSQL major versions fleetlm builds on.
 *
 * fleetlm targets PostgreSQL 15 and keeps 16 and 17 compiling.  Every
 * version test lives here, so the rest of the code reads as if there were
 * one PostgreSQL.
 *
 * src/compat.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_COMPAT_H
#define FLEETLM_COMPAT_H

#include "utils/wait_event.h"

#if PG_VERSION_NUM < 150000
#error "fleetlm requires PostgreSQL 15 or later"
#endif

/*
 * Wait events: named custom wait events arrived in 17.  Until then every
 * wait of ours reports PG_WAIT_EXTENSION.
 */
#define FLEETLM_WAIT_EVENT	PG_WAIT_EXTENSION

/*
 * madvise(MADV_POPULATE_WRITE) (Linux 5.14, glibc 2.35): map a range of
 * shared memory into this process's page tables in one call.  Elsewhere
 * the ring's pages fault in one by one.
 */
#include <sys/mman.h>
#ifdef MADV_POPULATE_WRITE
#define FLEETLM_HAVE_MADV_POPULATE_WRITE 1
#endif

/*
 * Are synchronous standbys configured, as the checkpointer last published
 * it in WalSndCtl (walsender_private.h must be included first)?  The
 * minor releases of 2025 replaced the bool sync_standbys_defined with the
 * bits of sync_standbys_status; before the checkpointer first publishes
 * (SYNC_STANDBY_INIT unset) the backend's own setting answers, as in
 * SyncRepWaitForLSN.
 */
#ifdef SYNC_STANDBY_DEFINED
#define FLEETLM_SYNC_STANDBYS_DEFINED() \
	((WalSndCtl->sync_standbys_status & SYNC_STANDBY_INIT) != 0 ? \
	 (WalSndCtl->sync_standbys_status & SYNC_STANDBY_DEFINED) != 0 : \
	 (SyncRepStandbyNames != NULL && SyncRepStandbyNames[0] != '\0'))
#else
#define FLEETLM_SYNC_STANDBYS_DEFINED() (WalSndCtl->sync_standbys_defined)
#endif

/* pg_prng and InitMaterializedSRF exist from 15 on; nothing to map. */

#endif							/* FLEETLM_COMPAT_H */

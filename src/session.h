/*-------------------------------------------------------------------------
 *
 * session.h
 *	  The shared session table: per-session state the append and read
 *	  paths need without touching the tables.
 *
 * Locking rules
 * -------------
 * The table is FLEET_SESSION_PARTITIONS shared hash tables, one per
 * partition; an entry is protected by the partition lock its hash code
 * selects (session_partition_lock()).  Appenders hold it exclusively while
 * they assign a seq and insert the record (then take insert_lock:
 * partition -> insert), readers hold it shared to copy last_seq/last_lsn.
 * The applier evicts entries one partition at a time, holding that
 * partition's lock exclusively, and bumps the partition's eviction counter
 * and FleetShared->eviction_count while it holds it.
 *
 * Invariant: a session without an entry has no record in
 * [applied, inserted), so the tables are complete for it.  A reader that
 * finds no entry and reads the tables instead brackets the read with
 * session_eviction_mark(hashcode) and session_evicted_since(hashcode,
 * mark): an eviction in the session's partition during the read may have
 * removed an entry whose newest records the read's snapshot does not see,
 * and it then retries.  A reader of many sessions uses
 * session_eviction_mark_all() and session_evicted_since_all().
 *
 * src/session.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_SESSION_H
#define FLEETLM_SESSION_H

#include "storage/lwlock.h"
#include "utils/timestamp.h"

#include "fleetlm.h"

typedef struct FleetSession
{
	char		id[FLEETLM_ID_MAXLEN + 1];	/* hash key, NUL-terminated */
	char		user_id[FLEETLM_ID_MAXLEN + 1];
	char		agent_id[FLEETLM_ID_MAXLEN + 1];
	bool		deleted;		/* a DELETE_SESSION record is in the log */
	int64		last_seq;		/* last seq assigned */
	uint64		last_lsn;		/* newest record of the session, 0: none */
	TimestampTz last_used;
} FleetSession;

/* What a load from the tables found */
typedef struct FleetSessionInfo
{
	char		user_id[FLEETLM_ID_MAXLEN + 1];
	char		agent_id[FLEETLM_ID_MAXLEN + 1];
	int64		last_seq;
} FleetSessionInfo;

extern Size session_shmem_size(void);
extern void session_shmem_init(void);

extern uint32 session_hash_code(const char *id);
extern LWLock *session_partition_lock(uint32 hashcode);
extern FleetSession *session_find(const char *id, uint32 hashcode);
extern FleetSession *session_find_live(const char *id, uint32 hashcode);
extern FleetSession *session_acquire(const char *id, uint32 hashcode);
extern bool session_load_info(const char *id, FleetSessionInfo *info,
							  bool for_append);
extern void session_error_missing(const char *id, bool deleted) pg_attribute_noreturn();
extern int64 session_durable_last_seq(FleetSession *entry, uint64 durable,
									  uint64 applied);
extern uint64 session_evict(uint64 applied, bool all);
extern bool session_crowded(void);
extern bool session_replay(const char *id, uint64 lsn, int64 seq, bool deleted);
extern void session_clear(void);
extern long session_count(void);
extern void session_remove(FleetSession *entry);
extern uint64 session_eviction_mark(uint32 hashcode);
extern bool session_evicted_since(uint32 hashcode, uint64 mark);
extern uint64 session_eviction_mark_all(void);
extern bool session_evicted_since_all(uint64 mark);

#endif							/* FLEETLM_SESSION_H */

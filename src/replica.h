/*-------------------------------------------------------------------------
 *
 * replica.h
 *	  fleetlm's records in PostgreSQL's WAL (fleetlm.replication), their
 *	  redo on standbys and in archive recovery, and the standby's view of
 *	  the log.
 *
 * src/replica.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_REPLICA_H
#define FLEETLM_REPLICA_H

/*
 * The custom WAL resource manager id.  128 is reserved for experiments;
 * fleetlm uses 173.  Check the list on the PostgreSQL wiki page
 * "CustomWALResourceManagers" before running it next to another extension
 * with a resource manager of its own.
 */
#define FLEET_RMGR_ID			173
#define FLEET_RMGR_NAME			"fleetlm"

/* xl_info values (the high four bits) */
#define XLOG_FLEET_CHUNK		0x00	/* log bytes made durable by a round */
#define XLOG_FLEET_APPLIED		0x10	/* the applier committed up to here */

/*
 * XLOG_FLEET_CHUNK: the fleetlm WAL bytes [start, end) follow the struct.
 * `applied` is the primary's applied position when the chunk was logged.
 */
typedef struct xl_fleet_chunk
{
	uint64		wal_id;
	uint64		start;
	uint64		end;
	uint64		applied;
} xl_fleet_chunk;

/* XLOG_FLEET_APPLIED */
typedef struct xl_fleet_applied
{
	uint64		wal_id;
	uint64		applied;
} xl_fleet_applied;

/* FleetShared->replica_state */
#define FLEET_REPLICA_NONE		0	/* a primary, or no record replayed yet */
#define FLEET_REPLICA_UNSYNCED	1	/* the ring lacks records below the
									 * table: readers use the table alone */
#define FLEET_REPLICA_SYNCED	2	/* the ring holds every unapplied record */

extern bool fleetlm_replication;

extern void replica_register(void);
extern void replica_log_chunk(uint64 from, uint64 to);
extern void replica_log_applied(uint64 applied);
extern bool replica_wait_standby(bool nothrow);
extern void replica_promoted(void);
extern void fleetlm_require_primary(const char *function);

#endif							/* FLEETLM_REPLICA_H */

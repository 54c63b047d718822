/*-------------------------------------------------------------------------
 *
 * fleetlm.h
 *	  Module-wide declarations: GUC variables, limits, module entry points.
 *
 * src/fleetlm.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_H
#define FLEETLM_H

#include "postgres.h"

#include "compat.h"

/* Longest session, user, agent, sender id and kind, in bytes. */
#define FLEETLM_ID_MAXLEN		64

/* Longest idempotency key, in bytes. */
#define FLEETLM_KEY_MAXLEN		128

/* GUC variables (fleetlm.c) */
extern char *fleetlm_database;
extern char *fleetlm_wal_directory;
extern int	fleetlm_wal_buffers_kb;
extern int	fleetlm_wal_segment_size_mb;
extern int	fleetlm_max_active_sessions;
extern int	fleetlm_max_message_size_kb;
extern int	fleetlm_flush_interval_ms;
extern int	fleetlm_flush_batch_size;
extern int	fleetlm_applier_lock_timeout_ms;
extern bool fleetlm_synchronous_append;
extern int	fleetlm_startup_timeout_ms;
extern bool fleetlm_allow_wal_symlink;
extern char *fleetlm_agent_url_allowlist;
extern char *fleetlm_agent_secrets_file;
extern int	fleetlm_dispatch_max_inflight;
extern int	fleetlm_dispatch_max_turns;
extern int	fleetlm_stream_buffer_size_kb;
extern int	fleetlm_dispatch_connect_timeout_ms;
extern int	fleetlm_dispatch_idle_timeout_ms;
extern int	fleetlm_dispatch_retry_max_delay_ms;
extern int	fleetlm_dispatch_max_line_kb;
extern int	fleetlm_dispatch_max_response_kb;

/* Derived sizes, in bytes */
#define FLEETLM_RING_SIZE			((uint64) fleetlm_wal_buffers_kb * 1024)
#define FLEETLM_SEGMENT_SIZE		((uint64) fleetlm_wal_segment_size_mb * 1024 * 1024)
#define FLEETLM_MAX_MESSAGE_SIZE	((Size) fleetlm_max_message_size_kb * 1024)

/* Background worker entry points (must be exported for the postmaster) */
extern PGDLLEXPORT void walwriter_main(Datum main_arg);
extern PGDLLEXPORT void applier_main(Datum main_arg);
extern PGDLLEXPORT void dispatch_main(Datum main_arg);

#endif							/* FLEETLM_H */

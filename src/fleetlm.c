/*-------------------------------------------------------------------------
 *
 * fleetlm.c
 *	  Module entry point: GUCs, shared memory hooks, background workers.
 *
 * fleetlm is a durable conversation store for LLM agents.  An append
 * returns once its record is fdatasynced to fleetlm's own WAL, in a group
 * commit led by a waiting backend or by the "fleetlm wal writer" worker;
 * the "fleetlm applier" worker moves durable records into ordinary tables
 * every fleetlm.flush_interval.  src/README describes the architecture.
 *
 * src/fleetlm.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "agent_url.h"
#include "applier.h"
#include "dispatch.h"
#include "fleetlm.h"
#include "replica.h"
#include "shmem.h"
#include "walwriter.h"

PG_MODULE_MAGIC;

char	   *fleetlm_database = NULL;
char	   *fleetlm_wal_directory = NULL;
int			fleetlm_wal_buffers_kb = 16384;
int			fleetlm_wal_segment_size_mb = 16;
int			fleetlm_max_active_sessions = 131072;
int			fleetlm_max_message_size_kb = 1024;
int			fleetlm_flush_interval_ms = 300;
int			fleetlm_flush_batch_size = 10000;
int			fleetlm_applier_lock_timeout_ms = 1000;
bool		fleetlm_synchronous_append = true;
int			fleetlm_startup_timeout_ms = 30000;
bool		fleetlm_allow_wal_symlink = false;
char	   *fleetlm_agent_url_allowlist = NULL;
char	   *fleetlm_agent_secrets_file = NULL;
int			fleetlm_dispatch_max_inflight = 64;
int			fleetlm_dispatch_max_turns = 10000;
int			fleetlm_stream_buffer_size_kb = 64;
int			fleetlm_dispatch_connect_timeout_ms = 5000;
int			fleetlm_dispatch_idle_timeout_ms = 30000;
int			fleetlm_dispatch_retry_max_delay_ms = 30000;
int			fleetlm_dispatch_max_line_kb = 1024;
int			fleetlm_dispatch_max_response_kb = 16384;

void		_PG_init(void);

static void fleetlm_define_gucs(bool preloading);

/*
 * Define the GUCs.  The PGC_POSTMASTER ones can only be defined while the
 * library is preloaded; loaded later, the functions refuse to run anyway.
 */
static void
fleetlm_define_gucs(bool preloading)
{
	DefineCustomBoolVariable("fleetlm.synchronous_append",
							 "Whether append waits until its message is fsynced to the fleetlm WAL.",
							 "Off returns once the message is in shared memory; a crash may lose the last few milliseconds.",
							 &fleetlm_synchronous_append,
							 true,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("fleetlm.startup_timeout",
							"How long a call waits for fleetlm to finish recovery before failing.",
							NULL,
							&fleetlm_startup_timeout_ms,
							30000,
							0,
							INT_MAX,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("fleetlm.flush_interval",
							"Time between the applier's moves of durable messages into tables.",
							NULL,
							&fleetlm_flush_interval_ms,
							300,
							1,
							60000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("fleetlm.flush_batch_size",
							"Most messages the applier moves in one transaction.",
							NULL,
							&fleetlm_flush_batch_size,
							10000,
							1,
							1000000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("fleetlm.applier_lock_timeout",
							"Longest the applier waits for a lock before it rolls its batch back and retries.",
							"Keeps a transaction that holds a lock on fleetlm's tables from stalling the applier unseen.",
							&fleetlm_applier_lock_timeout_ms,
							1000,
							10,
							600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("fleetlm.agent_url_allowlist",
							   "URL prefixes agents may be registered and called at, comma-separated.",
							   "Empty allows none.  Example: 'http://127.0.0.1:8081/, https://api.example.com/v1/'.",
							   &fleetlm_agent_url_allowlist,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   agent_url_allowlist_check_hook, NULL, NULL);

	DefineCustomStringVariable("fleetlm.agent_secrets_file",
							   "File the values of agents' secret headers are read from.",
							   "Lines of name=value; a relative path is relative to the data directory.  Read by the dispatcher only.",
							   &fleetlm_agent_secrets_file,
							   "fleetlm_secrets.conf",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("fleetlm.dispatch_connect_timeout",
							"Longest the dispatcher waits to connect to an agent.",
							NULL,
							&fleetlm_dispatch_connect_timeout_ms,
							5000,
							100,
							600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("fleetlm.dispatch_idle_timeout",
							"Longest an agent's reply may go without a byte before the call is abandoned (and retried).",
							NULL,
							&fleetlm_dispatch_idle_timeout_ms,
							30000,
							100,
							3600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("fleetlm.dispatch_retry_max_delay",
							"Cap of the back-off between two attempts of one turn.",
							NULL,
							&fleetlm_dispatch_retry_max_delay_ms,
							30000,
							10,
							3600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("fleetlm.dispatch_max_line",
							"Longest line (or SSE event) of an agent's reply.",
							NULL,
							&fleetlm_dispatch_max_line_kb,
							1024,
							1,
							65536,
							PGC_SIGHUP,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("fleetlm.dispatch_max_response",
							"Largest reply body the dispatcher reads from an agent.",
							NULL,
							&fleetlm_dispatch_max_response_kb,
							16384,
							1,
							1024 * 1024,
							PGC_SIGHUP,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	if (!preloading)
	{
		MarkGUCPrefixReserved("fleetlm");
		return;
	}

	DefineCustomIntVariable("fleetlm.dispatch_max_inflight",
							"Most agent calls in flight at once, over all agents.",
							"Also sizes the chunk store of fleetlm.wait_for_stream (twice as many slots).",
							&fleetlm_dispatch_max_inflight,
							64,
							1,
							10000,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("fleetlm.dispatch_max_turns",
							"Most sessions the dispatcher tracks with an unanswered turn at once.",
							"Sessions beyond it wait until others are answered.",
							&fleetlm_dispatch_max_turns,
							10000,
							16,
							10000000,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("fleetlm.stream_buffer_size",
							"Chunk buffer of one streamed reply, for fleetlm.wait_for_stream.",
							"A reader that falls further behind than this reads the final message instead.",
							&fleetlm_stream_buffer_size_kb,
							64,
							4,
							65536,
							PGC_POSTMASTER,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomStringVariable("fleetlm.database",
							   "Database that holds fleetlm's tables; the applier connects to it.",
							   NULL,
							   &fleetlm_database,
							   "postgres",
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("fleetlm.wal_directory",
							   "Directory of fleetlm's WAL segments, relative to the data directory or absolute.",
							   "Point it at a fast disk (NVMe) of its own.",
							   &fleetlm_wal_directory,
							   "fleetlm_wal",
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, NULL);

	DefineCustomBoolVariable("fleetlm.replication",
							 "Whether fleetlm's records also go into PostgreSQL's WAL, for standbys, backups and PITR.",
							 "On: streaming standbys, base backups and point-in-time recovery hold the fleetlm log, and appends wait for synchronous standbys as commits do.",
							 &fleetlm_replication,
							 false,
							 PGC_POSTMASTER,
							 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("fleetlm.allow_wal_symlink",
							 "Whether fleetlm.wal_directory may be a symbolic link.",
							 "Off refuses a WAL directory that is a symbolic link, so that it cannot be redirected unnoticed.",
							 &fleetlm_allow_wal_symlink,
							 false,
							 PGC_POSTMASTER,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("fleetlm.wal_buffers",
							"Size of the shared ring that holds messages until they are applied.",
							"Appends wait for space when the applier falls this far behind.",
							&fleetlm_wal_buffers_kb,
							16384,
							1024,
							1024 * 1024,
							PGC_POSTMASTER,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("fleetlm.wal_segment_size",
							"Size of each fleetlm WAL segment file.",
							"Fixed when the WAL directory is created.",
							&fleetlm_wal_segment_size_mb,
							16,
							1,
							1024,
							PGC_POSTMASTER,
							GUC_UNIT_MB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("fleetlm.max_active_sessions",
							"Sessions the shared session table can hold at once.",
							"Sessions stay in it while their partition has room; from a crowded partition the least recently used ones whose messages are all applied are evicted.",
							&fleetlm_max_active_sessions,
							131072,
							16,
							INT_MAX / 1024,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("fleetlm.max_message_size",
							"Largest content plus metadata of one message.",
							"At most a quarter of fleetlm.wal_buffers.",
							&fleetlm_max_message_size_kb,
							1024,
							1,
							256 * 1024,
							PGC_POSTMASTER,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("fleetlm");
}

/*
 * Module load.  Shared memory and workers exist only when the library is
 * preloaded; otherwise the GUCs are defined and every function that needs
 * shared memory says how to fix the configuration.
 */
void
_PG_init(void)
{
	fleetlm_define_gucs(process_shared_preload_libraries_in_progress);

	if (!process_shared_preload_libraries_in_progress)
		return;

	if ((uint64) fleetlm_max_message_size_kb * 4 > (uint64) fleetlm_wal_buffers_kb)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("fleetlm.max_message_size (%d kB) must be at most a quarter of fleetlm.wal_buffers (%d kB)",
						fleetlm_max_message_size_kb, fleetlm_wal_buffers_kb)));

	shmem_install_hooks();
	replica_register();
	walwriter_register();
	applier_register();
	dispatch_register();
}

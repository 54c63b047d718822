/*-------------------------------------------------------------------------
 *
 * recovery.c
 *	  Recovery of the fleetlm WAL, run by the applier at every start before
 *	  appends are accepted (as PostgreSQL's xlogrecovery.c is split from
 *	  xlog.c).
 *
 * recovery_run() waits for CREATE EXTENSION in fleetlm.database, reads the
 * applied position from fleetlm.wal_state, checks the WAL directory
 * (segment.c), removes temporary files a crash left there, reads every
 * valid record past the applied position into the ring (applying whenever
 * the ring fills), ends the log at the first invalid record, zeroes what
 * follows it, removes the later segments, applies the rest and sets READY.
 *
 * Where the log ends, and what it means:
 * - zeroed space, a stale record of a recycled segment, a torn or cut-short
 *	 record with nothing valid after it: the normal end after a crash.
 *	 Logged.
 * - an invalid record followed by valid ones, in the same segment or in a
 *	 later segment file: corruption.  A WARNING, copies of the segments
 *	 are kept, and the later records are discarded (README, "Corruption
 *	 before the end").
 * - the end of the segment files (a missing segment, or a file shorter
 *	 than fleetlm.wal_segment_size) followed by valid records in a later
 *	 segment file: a hole, not the end.  Recovery refuses with an ERROR
 *	 (57P03) and changes no WAL file; the applier exits, the postmaster
 *	 starts it again, and it retries until the file is restored.  Without
 *	 valid records after it, the hole is the real end (e.g. the log ended
 *	 exactly at a segment boundary and the next segment was never created).
 *
 * "Valid" always means self-locating: a sane header that carries its own
 * position, and a matching CRC.  Stale bytes of a recycled segment carry
 * older positions, preallocated space is zeroes, so neither passes.
 *
 * Locking rules
 * -------------
 * Runs only in the applier, before READY.  Until then no other process
 * reads or writes the ring or the segment files (segment.h; the WAL writer
 * and the SQL functions wait for READY), so recovery reads and sets the
 * log positions without holding insert_lock or write_lock.  `applied`
 * moves only in applier_apply_until(), which publishes it under
 * reclaim_lock as always.
 *
 * src/recovery.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <unistd.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "portability/instr_time.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "applier.h"
#include "fleetlm.h"
#include "record.h"
#include "recovery.h"
#include "replica.h"
#include "ring.h"
#include "segment.h"
#include "shmem.h"

/* bytes of a segment file read at once while looking for valid records */
#define RECOVERY_PROBE_CHUNK	(1024 * 1024)

static bool recovery_read_state(uint64 *applied, bool *have_id, uint64 *wal_id);
static void recovery_store_wal_id(uint64 wal_id);
static uint64 recovery_scan(SegmentReader *reader, uint64 start, uint64 *nrecords);
static void recovery_report_end(SegmentReader *reader, uint64 end, uint64 stop,
								const char *why, bool at_hole);
static bool recovery_find_record(SegmentReader *reader, uint64 after,
								 uint64 *found);
static bool recovery_record_valid(SegmentReader *reader, uint64 pos);
static void recovery_refuse_hole(uint64 stop, uint64 found) pg_attribute_noreturn();

/*
 * Read fleetlm.wal_state.  Returns false if the extension does not exist
 * (yet) in fleetlm.database.
 */
static bool
recovery_read_state(uint64 *applied, bool *have_id, uint64 *wal_id)
{
	bool		found = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (OidIsValid(get_extension_oid("fleetlm", true)))
	{
		int			ret;

		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		ret = SPI_execute("SELECT applied_lsn, wal_id FROM fleetlm.wal_state", true, 0);
		if (ret != SPI_OK_SELECT || SPI_processed != 1)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("fleetlm.wal_state must hold exactly one row")));
		else
		{
			bool		isnull;
			Datum		d;

			d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
			*applied = isnull ? 0 : (uint64) DatumGetInt64(d);
			d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
			*have_id = !isnull;
			*wal_id = isnull ? 0 : (uint64) DatumGetInt64(d);
			found = true;
		}
		SPI_finish();
		PopActiveSnapshot();
	}
	CommitTransactionCommand();
	return found;
}

/*
 * Store the identity of a newly created WAL directory in fleetlm.wal_state,
 * so that a later start recognizes it (and refuses another one).
 */
static void
recovery_store_wal_id(uint64 wal_id)
{
	Datum		values[1];
	Oid			types[1] = {INT8OID};

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	values[0] = Int64GetDatum((int64) wal_id);
	if (SPI_execute_with_args("UPDATE fleetlm.wal_state SET wal_id = $1",
							  1, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not store the fleetlm WAL identity");
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/*
 * Is there a valid record at log position `pos`: a sane header carrying
 * `pos`, and a matching CRC?  The record may span segment files.
 */
static bool
recovery_record_valid(SegmentReader *reader, uint64 pos)
{
	FleetRecordHeader hdr;
	char	   *rec;
	bool		ok;

	if (!segreader_read(reader, pos, (char *) &hdr, sizeof(hdr)) ||
		!record_header_sane(&hdr, pos))
		return false;
	rec = palloc_extended(FLEET_REC_ALIGN(hdr.total_len), MCXT_ALLOC_HUGE);
	ok = segreader_read(reader, pos, rec, hdr.total_len) && record_crc_ok(rec);
	pfree(rec);
	return ok;
}

/*
 * Look for a valid record at a position after `after`, in every segment
 * file, whatever missing segments or short files lie in between.  Sets
 * *found to the first one's position and returns true if there is one.
 *
 * Every 8-byte aligned position is a candidate.  A cheap pass over the raw
 * words picks those whose `lsn` field holds their own position (zeroed
 * space and stale records never do); only they are checked in full.  So
 * the whole probe costs about one sequential read of the files.
 */
static bool
recovery_find_record(SegmentReader *reader, uint64 after, uint64 *found)
{
	uint64		segsize = fleet_shared->segment_size;
	uint64	   *starts;
	int			n;
	char	   *buf;
	bool		hit = false;

	n = segment_list(&starts);
	buf = palloc(RECOVERY_PROBE_CHUNK);
	for (int i = 0; i < n && !hit; i++)
	{
		uint64		seg = starts[i];
		uint64		from;
		int			fd;
		int			err;
		char		path[MAXPGPATH];

		/* the lsn field of a record at p > after is at p + 8 >= after + 16 */
		from = Max(seg, after + 2 * sizeof(uint64));
		if (from >= seg + segsize)
			continue;
		segment_path(seg, path, sizeof(path));
		fd = segment_open(seg, &err);
		if (fd < 0)
		{
			if (err == ENOENT)
				continue;
			errno = err;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not open file \"%s\": %m", path)));
		}
		while (!hit && from < seg + segsize)
		{
			Size		want = (Size) Min((uint64) RECOVERY_PROBE_CHUNK,
										  seg + segsize - from);
			ssize_t		got = pg_pread(fd, buf, want, (off_t) (from - seg));

			if (got < 0)
				ereport(ERROR,
						(errcode_for_file_access(),
						 errmsg("could not read file \"%s\": %m", path)));
			if (got < (ssize_t) sizeof(uint64))
				break;			/* end of a short file */
			for (Size off = 0; off + sizeof(uint64) <= (Size) got;
				 off += sizeof(uint64))
			{
				uint64		word;
				uint64		pos = from + off - offsetof(FleetRecordHeader, lsn);

				memcpy(&word, buf + off, sizeof(word));
				if (word == pos && recovery_record_valid(reader, pos))
				{
					*found = pos;
					hit = true;
					break;
				}
			}
			from += got - got % sizeof(uint64);
		}
		close(fd);
	}
	pfree(buf);
	pfree(starts);
	return hit;
}

/*
 * The segment files end at `stop` (a segment is missing or cut short), yet
 * a valid record follows at `found`: the log has a hole, it does not end
 * there.  Ending it would remove the later segments and, with them,
 * records that may have been acknowledged; so refuse to start and change
 * nothing.  The applier exits, the postmaster restarts it, and recovery
 * runs again until the file is back; meanwhile calls fail with "fleetlm is
 * not ready", whose detail carries this message.
 */
static void
recovery_refuse_hole(uint64 stop, uint64 found)
{
	uint64		segsize = fleet_shared->segment_size;
	uint64		hole;
	off_t		size = 0;
	bool		exists = false;
	char		path[MAXPGPATH];
	char		found_path[MAXPGPATH];

	/*
	 * The first missing or short file from stop's segment on.  The read at
	 * `stop` failed on one, so this stops there at the latest; past the
	 * last file every segment is missing.
	 */
	for (hole = segment_start(stop);; hole += segsize)
	{
		exists = segment_file_size(hole, &size);
		if (!exists || size < (off_t) segsize)
			break;
	}
	segment_path(hole, path, sizeof(path));
	segment_path(segment_start(found), found_path, sizeof(found_path));

	if (!exists)
		ereport(ERROR,
				(errcode(ERRCODE_CANNOT_CONNECT_NOW),
				 errmsg("fleetlm WAL segment \"%s\" is missing, but a valid record follows at position %llu",
						path, (unsigned long long) found),
				 errdetail("The segment files end at position %llu, and segment \"%s\" holds a valid record after it. Ending the log at the hole would discard records that may have been acknowledged, so recovery stops here and changes no WAL file.",
						   (unsigned long long) stop, found_path),
				 errhint("Restore \"%s\"; fleetlm then starts by itself. If the file is lost for good, move the segment files after it out of the WAL directory (keep them): recovery then ends the log at the hole and the records after it are discarded.",
						 path)));
	ereport(ERROR,
			(errcode(ERRCODE_CANNOT_CONNECT_NOW),
			 errmsg("fleetlm WAL segment \"%s\" is cut short (%lld of %llu bytes), but a valid record follows at position %llu",
					path, (long long) size, (unsigned long long) segsize,
					(unsigned long long) found),
			 errdetail("The segment files end at position %llu, and segment \"%s\" holds a valid record after it. Ending the log at the hole would discard records that may have been acknowledged, so recovery stops here and changes no WAL file.",
					   (unsigned long long) stop, found_path),
			 errhint("Restore the whole of \"%s\"; fleetlm then starts by itself. If its end is lost for good, move the segment files after it out of the WAL directory (keep them): recovery then ends the log in the short file and the records after it are discarded.",
					 path)));
}

/*
 * Log where and why the log ends (`end`, the end of the last complete
 * group; `stop`, the first invalid record; `at_hole`, the segment files
 * end at `stop`).  If valid records follow `stop` anywhere in the segment
 * files, the log does not simply end here: after a hole, refuse to start
 * (recovery_refuse_hole); after an invalid record, the WAL is corrupt, not
 * merely torn: say so loudly and keep a copy of the segments before they
 * are truncated.
 */
static void
recovery_report_end(SegmentReader *reader, uint64 end, uint64 stop,
					const char *why, bool at_hole)
{
	uint64		seg = segment_start(end);
	char		path[MAXPGPATH];
	uint64		found;

	segment_path(seg, path, sizeof(path));
	if (recovery_find_record(reader, stop, &found))
	{
		if (at_hole)
			recovery_refuse_hole(stop, found);

		ereport(WARNING,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("fleetlm WAL is corrupt in segment \"%s\" at offset %llu: %s",
						path, (unsigned long long) (end - seg), why),
				 errdetail("A valid record follows at position %llu; recovery ends the log at position %llu and discards every record after it.",
						   (unsigned long long) found, (unsigned long long) end)));
		segment_preserve(seg);
		if (segment_start(found) != seg)
			segment_preserve(segment_start(found));
		return;
	}
	ereport(LOG,
			(errmsg("fleetlm recovery: log ends at position %llu (segment \"%s\", offset %llu): %s",
					(unsigned long long) end, path,
					(unsigned long long) (end - seg), why)));
}

/*
 * Read valid records from `start` into the ring, applying whenever the ring
 * fills.  Returns the end of the log: the end of the last complete group of
 * valid records.  Errors out instead if the segment files end at a hole
 * that valid records follow.
 */
static uint64
recovery_scan(SegmentReader *reader, uint64 start, uint64 *nrecords)
{
	uint64		ring_size = fleet_shared->ring_size;
	uint64		pos = start;
	uint64		boundary = start;
	uint64		loaded = 0;
	const char *why = NULL;
	char		whybuf[128];
	bool		at_hole = false;

	*nrecords = 0;
	for (;;)
	{
		FleetRecordHeader hdr;
		char	   *rec;
		Size		alen;

		CHECK_FOR_INTERRUPTS();
		if (!segreader_read(reader, pos, (char *) &hdr, sizeof(hdr)))
		{
			why = "end of the segment files";
			at_hole = true;
			break;
		}
		if (hdr.total_len == 0 && hdr.lsn == 0)
		{
			why = "zeroed space";
			break;
		}
		if (!record_header_sane(&hdr, pos))
		{
			if (hdr.lsn != pos && hdr.total_len >= sizeof(FleetRecordHeader))
				snprintf(whybuf, sizeof(whybuf),
						 "stale record of position %llu (bytes of a recycled segment)",
						 (unsigned long long) hdr.lsn);
			else
				snprintf(whybuf, sizeof(whybuf),
						 "invalid record header (length %u)", hdr.total_len);
			why = whybuf;
			break;
		}
		alen = FLEET_REC_ALIGN(hdr.total_len);
		if (alen > ring_size)
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("fleetlm WAL record at position %llu is %u bytes, larger than fleetlm.wal_buffers",
							(unsigned long long) pos, hdr.total_len),
					 errhint("Increase fleetlm.wal_buffers to at least %zu kB.",
							 (size_t) (alen / 1024 + 1))));
		rec = palloc0(alen);
		if (!segreader_read(reader, pos, rec, hdr.total_len))
		{
			pfree(rec);
			why = "record cut short by the end of the segment files";
			at_hole = true;
			break;
		}
		if (!record_crc_ok(rec))
		{
			pfree(rec);
			why = "CRC mismatch";
			break;
		}

		/* make room: apply complete groups read so far */
		if (pos + alen - fleet_read_pos(&fleet_shared->applied) > ring_size)
		{
			applier_apply_until(boundary);
			if (pos + alen - fleet_read_pos(&fleet_shared->applied) > ring_size)
				ereport(ERROR,
						(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
						 errmsg("a group of fleetlm WAL records at position %llu does not fit fleetlm.wal_buffers",
								(unsigned long long) boundary)));
		}
		ring_write(pos, rec, alen);
		pfree(rec);
		if (hdr.type == FLEET_REC_DELETE_SESSION)
			fleet_count(&fleet_shared->tombstones, 1);
		pos += alen;
		loaded++;
		fleet_write_pos(&fleet_shared->inserted, pos);
		fleet_write_pos(&fleet_shared->written, pos);
		if ((hdr.flags & FLEET_RECF_MORE) == 0)
		{
			boundary = pos;
			*nrecords = loaded;
			fleet_write_pos(&fleet_shared->durable, pos);
		}
	}
	if (boundary != pos)
	{
		snprintf(whybuf, sizeof(whybuf),
				 "incomplete group of records (%s after it)", why);
		why = whybuf;
	}
	recovery_report_end(reader, boundary, pos, why, at_hole);
	return boundary;
}

/*
 * Recovery, run at every start of the applier before READY: see the file
 * header.  On success the state is READY; any error leaves it RECOVERING
 * and the applier exits (to be restarted by the postmaster).
 */
void
recovery_run(void)
{
	uint64		applied = 0;
	uint64		wal_id = 0;
	bool		have_id = false;
	bool		fresh;
	bool		logged = false;
	uint64		start;
	uint64		end;
	uint64		nrecords;
	SegmentReader reader;
	instr_time	t0,
				t1;

	applier_set_state(FLEET_STATE_STARTING);

	/* wait for CREATE EXTENSION in fleetlm.database */
	while (!recovery_read_state(&applied, &have_id, &wal_id))
	{
		if (!logged)
			ereport(LOG,
					(errmsg("fleetlm applier: extension \"fleetlm\" is not installed in database \"%s\"; waiting",
							fleetlm_database)));
		logged = true;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000L, FLEETLM_WAIT_EVENT);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}

	INSTR_TIME_SET_CURRENT(t0);
	applier_set_state(FLEET_STATE_RECOVERING);
	replica_promoted();

	wal_id = segment_init_directory(have_id, wal_id, &fresh);
	if (fresh)
		recovery_store_wal_id(wal_id);
	fleet_shared->wal_id = wal_id;
	segment_remove_temp_files();

	start = Max(applied, FLEET_FIRST_LSN);
	pg_atomic_write_u64(&fleet_shared->applied, start);
	pg_atomic_write_u64(&fleet_shared->durable, start);
	pg_atomic_write_u64(&fleet_shared->written, start);
	pg_atomic_write_u64(&fleet_shared->inserted, start);

	segreader_init(&reader);
	end = recovery_scan(&reader, start, &nrecords);
	segreader_close(&reader);

	segment_truncate_after(end);
	fleet_write_pos(&fleet_shared->inserted, end);
	fleet_write_pos(&fleet_shared->written, end);
	fleet_write_pos(&fleet_shared->durable, end);
	applier_apply_until(end);
	segment_maintain(end, end);

	INSTR_TIME_SET_CURRENT(t1);
	INSTR_TIME_SUBTRACT(t1, t0);
	pg_atomic_write_u64(&fleet_shared->recovery_records, nrecords);
	pg_atomic_write_u64(&fleet_shared->recovery_usec, INSTR_TIME_GET_MICROSEC(t1));

	ereport(LOG,
			(errmsg("fleetlm recovery complete: replayed %llu records from position %llu to %llu in %.1f ms",
					(unsigned long long) nrecords, (unsigned long long) start,
					(unsigned long long) end, INSTR_TIME_GET_MILLISEC(t1))));
	applier_set_state(FLEET_STATE_READY);
}

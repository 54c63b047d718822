/*-------------------------------------------------------------------------
 *
 * segment.h
 *	  fleetlm's WAL files: the directory, its control file, preallocated
 *	  segments named by their start position, and sequential reading for
 *	  recovery.
 *
 * Locking rules
 * -------------
 * Before READY only the applier (recovery) touches the directory.  After
 * READY the WAL writer writes into segments and may create the one it needs;
 * the applier preallocates, recycles and removes segments.  Every
 * install (rename into place) and removal happens under
 * FleetShared->segment_lock, after checking that the target is still
 * missing (install) or wholly below `applied` (removal, recycling), so the
 * two never replace a file the other uses.  Recovery alone removes
 * temporary files (FLEET_SEGMENT_TMP_PREFIX, CONTROL.tmp), before READY,
 * when nobody can be creating one.
 *
 * src/segment.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_SEGMENT_H
#define FLEETLM_SEGMENT_H

#define FLEET_SEGMENT_NAME_LEN	16
#define FLEET_CONTROL_FILE		"CONTROL"
/* a segment being preallocated: FLEET_SEGMENT_TMP_PREFIX<pid> */
#define FLEET_SEGMENT_TMP_PREFIX	"segment.tmp."

/* Sequential reader of the log on disk, for recovery */
typedef struct SegmentReader
{
	char	   *buf;			/* buffered bytes of the log */
	Size		bufsize;
	uint64		buf_start;		/* log position of buf[0] */
	uint64		buf_end;		/* log position after the last valid byte */
	int			fd;
	uint64		fd_seg;			/* start of the segment fd is open on */
} SegmentReader;

extern uint64 segment_start(uint64 lsn);
extern void segment_path(uint64 seg_start, char *path, Size size);
extern uint64 segment_init_directory(bool have_id, uint64 expected_id,
									 bool *fresh);
extern bool segment_adopt_identity(uint64 wal_id);
extern int	segment_list(uint64 **starts);
extern bool segment_file_size(uint64 seg_start, off_t *size);
extern void segment_remove_temp_files(void);
extern int	segment_open(uint64 seg_start, int *err);
extern bool segment_prepare(uint64 seg_start, int elevel, int *err);
extern void segment_maintain(uint64 applied, uint64 written);
extern void segment_truncate_after(uint64 end);
extern void segment_preserve(uint64 seg_start);

extern void segreader_init(SegmentReader *r);
extern bool segreader_read(SegmentReader *r, uint64 lsn, char *dst, Size len);
extern void segreader_close(SegmentReader *r);

#endif							/* FLEETLM_SEGMENT_H */

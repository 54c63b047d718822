/*-------------------------------------------------------------------------
 *
 * segment.c
 *	  fleetlm's WAL directory: control file, preallocated segments,
 *	  recycling, truncation after recovery, removal of temporary files left
 *	  by a crash, and sequential reading.
 *
 * Segments are files of fleetlm.wal_segment_size bytes named by the log
 * position they start at (16 hex digits).  A segment is created under a
 * temporary name, zero-filled to full size, fsynced and renamed into place
 * with durable_rename(): writes into a preallocated file never extend it,
 * so fdatasync has no metadata to flush and a full disk shows up here, not
 * in the middle of a write.  A failure to make a segment rename durable is
 * reported at data_sync_elevel(), as PostgreSQL reports fsync failures: by
 * default a PANIC, since the file system's state is then unknown.  A crash
 * between creating and renaming leaves the temporary file behind; recovery
 * removes it at the next start (segment_remove_temp_files).
 *
 * See segment.h for which process touches the directory when.
 *
 * src/segment.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file_perm.h"
#include "miscadmin.h"
#include "port/pg_crc32c.h"
#include "storage/copydir.h"
#include "storage/fd.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "fleetlm.h"
#include "segment.h"
#include "shmem.h"

#define FLEET_CONTROL_MAGIC		0x464C4D57	/* "FLMW" */
#define FLEET_CONTROL_VERSION	1
#define FLEET_PREALLOC_SEGMENTS	2
#define FLEET_ZERO_CHUNK		(64 * 1024)
#define FLEET_READ_BUFFER		(1024 * 1024)

typedef struct FleetWalControl
{
	uint32		magic;
	uint32		version;
	uint64		segment_size;
	uint64		wal_id;
	pg_crc32c	crc;			/* over the fields above */
} FleetWalControl;

static void segment_write_control(uint64 wal_id);
static bool segment_read_control(FleetWalControl *ctl);
static int	segment_cmp(const void *a, const void *b);
static void segment_remove_all(void);
static bool segment_exists(uint64 seg_start);
static bool segment_check_directory(bool may_create);
static void segment_check_control_size(const FleetWalControl *ctl);
static bool segment_zero_fill(int fd, off_t from, off_t to, int *err);
static void segment_fsync_dir(void);

uint64
segment_start(uint64 lsn)
{
	return lsn - lsn % fleet_shared->segment_size;
}

void
segment_path(uint64 seg_start, char *path, Size size)
{
	snprintf(path, size, "%s/%016llX", fleetlm_wal_directory,
			 (unsigned long long) seg_start);
}

static bool
segment_exists(uint64 seg_start)
{
	char		path[MAXPGPATH];
	struct stat st;

	segment_path(seg_start, path, sizeof(path));
	return lstat(path, &st) == 0;
}

static void
segment_fsync_dir(void)
{
	fsync_fname(fleetlm_wal_directory, true);
}

/*
 * Size of segment seg_start's file in *size; false if there is no such
 * file.  Recovery uses it to tell a missing or short segment (a hole in
 * the log) from a full one.
 */
bool
segment_file_size(uint64 seg_start, off_t *size)
{
	char		path[MAXPGPATH];
	struct stat st;

	segment_path(seg_start, path, sizeof(path));
	if (lstat(path, &st) != 0)
	{
		if (errno == ENOENT)
			return false;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat file \"%s\": %m", path)));
	}
	*size = st.st_size;
	return true;
}

/*
 * Remove the temporary files a crash can leave behind: a segment being
 * preallocated (segment.tmp.<pid>) and a control file being written
 * (CONTROL.tmp).  Nothing else would ever remove them, and each leftover
 * segment.tmp holds a whole segment's worth of disk.  Called by recovery,
 * before READY, when no other process creates either kind of file.
 */
void
segment_remove_temp_files(void)
{
	DIR		   *dir;
	struct dirent *de;
	bool		removed = false;

	dir = AllocateDir(fleetlm_wal_directory);
	while ((de = ReadDir(dir, fleetlm_wal_directory)) != NULL)
	{
		char		path[MAXPGPATH];

		if (strncmp(de->d_name, FLEET_SEGMENT_TMP_PREFIX,
					strlen(FLEET_SEGMENT_TMP_PREFIX)) != 0 &&
			strcmp(de->d_name, FLEET_CONTROL_FILE ".tmp") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", fleetlm_wal_directory, de->d_name);
		if (unlink(path) != 0)
		{
			if (errno != ENOENT)
				ereport(LOG,
						(errcode_for_file_access(),
						 errmsg("could not remove file \"%s\": %m", path)));
			continue;
		}
		ereport(LOG,
				(errmsg("fleetlm: removed temporary file \"%s\" left behind by a crash",
						path)));
		removed = true;
	}
	FreeDir(dir);
	if (removed)
		segment_fsync_dir();
}

/*
 * Write the control file (segment size and WAL identity) durably.
 */
static void
segment_write_control(uint64 wal_id)
{
	FleetWalControl ctl;
	char		path[MAXPGPATH];
	char		tmppath[MAXPGPATH];
	int			fd;

	memset(&ctl, 0, sizeof(ctl));
	ctl.magic = FLEET_CONTROL_MAGIC;
	ctl.version = FLEET_CONTROL_VERSION;
	ctl.segment_size = fleet_shared->segment_size;
	ctl.wal_id = wal_id;
	INIT_CRC32C(ctl.crc);
	COMP_CRC32C(ctl.crc, &ctl, offsetof(FleetWalControl, crc));
	FIN_CRC32C(ctl.crc);

	snprintf(path, sizeof(path), "%s/%s", fleetlm_wal_directory, FLEET_CONTROL_FILE);
	snprintf(tmppath, sizeof(tmppath), "%s.tmp", path);
	fd = BasicOpenFilePerm(tmppath, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY,
						   S_IRUSR | S_IWUSR);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\": %m", tmppath)));
	errno = 0;
	if (write(fd, &ctl, sizeof(ctl)) != sizeof(ctl))
	{
		int			save_errno = errno ? errno : ENOSPC;

		close(fd);
		unlink(tmppath);
		errno = save_errno;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write file \"%s\": %m", tmppath)));
	}
	if (close(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not close file \"%s\": %m", tmppath)));
	durable_rename(tmppath, path, ERROR);
}

/*
 * Read and check the control file.  Returns false if it does not exist.
 */
static bool
segment_read_control(FleetWalControl *ctl)
{
	char		path[MAXPGPATH];
	int			fd;
	ssize_t		n;
	pg_crc32c	crc;

	snprintf(path, sizeof(path), "%s/%s", fleetlm_wal_directory, FLEET_CONTROL_FILE);
	fd = BasicOpenFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
	{
		if (errno == ENOENT)
			return false;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\": %m", path)));
	}
	n = read(fd, ctl, sizeof(*ctl));
	if (n < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read file \"%s\": %m", path)));
	close(fd);

	INIT_CRC32C(crc);
	COMP_CRC32C(crc, ctl, offsetof(FleetWalControl, crc));
	FIN_CRC32C(crc);
	if (n != sizeof(*ctl) || ctl->magic != FLEET_CONTROL_MAGIC ||
		!EQ_CRC32C(crc, ctl->crc))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("fleetlm WAL control file \"%s\" is corrupt", path)));
	if (ctl->version != FLEET_CONTROL_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("fleetlm WAL control file \"%s\" has version %u, expected %u",
						path, ctl->version, FLEET_CONTROL_VERSION)));
	return true;
}

/* qsort comparator of segment start positions */
static int
segment_cmp(const void *a, const void *b)
{
	uint64		x = *(const uint64 *) a;
	uint64		y = *(const uint64 *) b;

	return (x > y) - (x < y);
}

/*
 * Sorted start positions of the segment files in the directory; returns
 * their count, and the array (palloc'd) in *starts.  Other names (the
 * control file, temporary files, preserved corrupt segments) are ignored.
 */
int
segment_list(uint64 **starts)
{
	DIR		   *dir;
	struct dirent *de;
	int			n = 0;
	int			cap = 16;
	uint64	   *arr = palloc(cap * sizeof(uint64));

	dir = AllocateDir(fleetlm_wal_directory);
	while ((de = ReadDir(dir, fleetlm_wal_directory)) != NULL)
	{
		char	   *end;
		unsigned long long v;

		if (strlen(de->d_name) != FLEET_SEGMENT_NAME_LEN ||
			strspn(de->d_name, "0123456789ABCDEF") != FLEET_SEGMENT_NAME_LEN)
			continue;
		v = strtoull(de->d_name, &end, 16);
		if (n == cap)
		{
			cap *= 2;
			arr = repalloc(arr, cap * sizeof(uint64));
		}
		arr[n++] = (uint64) v;
	}
	FreeDir(dir);

	qsort(arr, n, sizeof(uint64), segment_cmp);
	*starts = arr;
	return n;
}

static void
segment_remove_all(void)
{
	uint64	   *starts;
	int			n = segment_list(&starts);
	char		path[MAXPGPATH];

	for (int i = 0; i < n; i++)
	{
		segment_path(starts[i], path, sizeof(path));
		if (unlink(path) != 0 && errno != ENOENT)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not remove file \"%s\": %m", path)));
	}
	pfree(starts);
	segment_fsync_dir();
}

/*
 * Make sure the WAL directory exists, belongs to us and matches the
 * configured segment size and the WAL identity stored in the database.
 * Returns the identity in use; *fresh is set when a new one was created
 * (first start, or the extension was created anew).  Called by recovery,
 * before anything reads or writes segments.
 */
/*
 * Check that the WAL directory is usable: not a symbolic link (unless
 * allowed), a directory, ours, private, accessible.  A missing directory
 * is created when may_create, else false is returned.
 */
static bool
segment_check_directory(bool may_create)
{
	struct stat st;

	if (lstat(fleetlm_wal_directory, &st) == 0 && S_ISLNK(st.st_mode) &&
		!fleetlm_allow_wal_symlink)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("fleetlm WAL directory \"%s\" is a symbolic link",
						fleetlm_wal_directory),
				 errhint("Set fleetlm.wal_directory to the real directory, or set fleetlm.allow_wal_symlink = on.")));
	if (stat(fleetlm_wal_directory, &st) != 0)
	{
		if (errno != ENOENT)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not access fleetlm WAL directory \"%s\": %m",
							fleetlm_wal_directory)));
		if (!may_create)
			return false;
		if (mkdir(fleetlm_wal_directory, S_IRWXU) != 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not create fleetlm WAL directory \"%s\": %m",
							fleetlm_wal_directory)));
		{
			char		parent[MAXPGPATH];

			strlcpy(parent, fleetlm_wal_directory, sizeof(parent));
			get_parent_directory(parent);
			fsync_fname(parent[0] ? parent : ".", true);
		}
		if (stat(fleetlm_wal_directory, &st) != 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not access fleetlm WAL directory \"%s\": %m",
							fleetlm_wal_directory)));
	}

	if (!S_ISDIR(st.st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("fleetlm WAL directory \"%s\" is not a directory",
						fleetlm_wal_directory)));
	if (st.st_uid != geteuid())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("fleetlm WAL directory \"%s\" is not owned by the server user",
						fleetlm_wal_directory)));
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
	{
		/*
		 * Ours, but open to others: a restored backup or a copy made by a
		 * tool that did not keep the mode.  Close it rather than refuse.
		 */
		if (chmod(fleetlm_wal_directory, S_IRWXU) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("fleetlm WAL directory \"%s\" has group or world access, and it could not be changed: %m",
							fleetlm_wal_directory),
					 errhint("Permissions should be u=rwx (0700).")));
		ereport(LOG,
				(errmsg("fleetlm: removed group and world access from WAL directory \"%s\"",
						fleetlm_wal_directory)));
	}
	if (access(fleetlm_wal_directory, R_OK | W_OK | X_OK) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("fleetlm WAL directory \"%s\" is not usable: %m",
						fleetlm_wal_directory)));
	return true;
}

/*
 * A control file's segment size must be ours.
 */
static void
segment_check_control_size(const FleetWalControl *ctl)
{
	if (ctl->segment_size != fleet_shared->segment_size)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("fleetlm WAL directory \"%s\" was created with fleetlm.wal_segment_size = %lluMB, but it is now %lluMB",
						fleetlm_wal_directory,
						(unsigned long long) (ctl->segment_size / (1024 * 1024)),
						(unsigned long long) (fleet_shared->segment_size / (1024 * 1024))),
				 errhint("Set fleetlm.wal_segment_size back to %lluMB and restart.",
						 (unsigned long long) (ctl->segment_size / (1024 * 1024)))));
}

/*
 * Make sure the WAL directory exists, belongs to us and matches the
 * configured segment size and the WAL identity stored in the database.
 * Returns the identity in use; *fresh is set when a new one was created
 * (first start, or the extension was created anew).  Called by recovery,
 * before anything reads or writes segments.
 */
uint64
segment_init_directory(bool have_id, uint64 expected_id, bool *fresh)
{
	FleetWalControl ctl;
	uint64		wal_id;

	*fresh = false;
	if (!segment_check_directory(!have_id))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FILE),
				 errmsg("fleetlm WAL directory \"%s\" does not exist",
						fleetlm_wal_directory),
				 errdetail("fleetlm.wal_state records WAL %016llX; its unapplied messages are in that directory.",
						   (unsigned long long) expected_id),
				 errhint("Restore the directory or fix fleetlm.wal_directory. To start over and lose unapplied messages, create an empty directory and set fleetlm.wal_state.wal_id to NULL.")));

	if (segment_read_control(&ctl))
	{
		segment_check_control_size(&ctl);
		if (have_id && ctl.wal_id == expected_id)
			return ctl.wal_id;
		if (have_id)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("fleetlm WAL directory \"%s\" holds WAL %016llX, but the database expects WAL %016llX",
							fleetlm_wal_directory,
							(unsigned long long) ctl.wal_id,
							(unsigned long long) expected_id),
					 errhint("fleetlm.wal_directory points at another installation's WAL.")));
		ereport(LOG,
				(errmsg("fleetlm: discarding WAL %016llX of a previous installation of the extension",
						(unsigned long long) ctl.wal_id)));
	}
	else if (have_id)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FILE),
				 errmsg("fleetlm WAL control file is missing in \"%s\"",
						fleetlm_wal_directory),
				 errdetail("fleetlm.wal_state records WAL %016llX.",
						   (unsigned long long) expected_id)));

	/* new identity: no segment of an earlier one may be replayed */
	segment_remove_all();
	do
	{
		if (!pg_strong_random(&wal_id, sizeof(wal_id)))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate a random WAL identity")));
	} while (wal_id == 0);
	segment_write_control(wal_id);
	*fresh = true;
	return wal_id;
}

/*
 * For the redo of replicated records: make the WAL directory hold the
 * primary's WAL `wal_id`, creating the directory if needed.  Returns true
 * if it held another identity (or none), whose segments are then removed:
 * the primary's extension was created anew, and positions start over.
 */
bool
segment_adopt_identity(uint64 wal_id)
{
	FleetWalControl ctl;

	(void) segment_check_directory(true);
	if (segment_read_control(&ctl))
	{
		segment_check_control_size(&ctl);
		if (ctl.wal_id == wal_id)
			return false;
		ereport(LOG,
				(errmsg("fleetlm: replacing WAL %016llX with the primary's WAL %016llX",
						(unsigned long long) ctl.wal_id,
						(unsigned long long) wal_id)));
	}
	segment_remove_all();
	segment_write_control(wal_id);
	return true;
}

/*
 * Open an existing segment for reading and writing; -1 with *err set if
 * it cannot be opened (ENOENT: it does not exist).  Symbolic links are not
 * followed.
 */
int
segment_open(uint64 seg_start, int *err)
{
	char		path[MAXPGPATH];
	int			fd;

	segment_path(seg_start, path, sizeof(path));
	fd = BasicOpenFile(path, O_RDWR | PG_BINARY | O_NOFOLLOW);
	*err = fd < 0 ? errno : 0;
	return fd;
}

static bool
segment_zero_fill(int fd, off_t from, off_t to, int *err)
{
	static char *zeros = NULL;

	if (zeros == NULL)
		zeros = MemoryContextAllocZero(TopMemoryContext, FLEET_ZERO_CHUNK);
	while (from < to)
	{
		size_t		n = Min((off_t) FLEET_ZERO_CHUNK, to - from);
		ssize_t		w;

		errno = 0;
		w = pg_pwrite(fd, zeros, n, from);
		if (w <= 0)
		{
			if (w < 0 && errno == EINTR)
				continue;
			*err = errno ? errno : ENOSPC;
			return false;
		}
		from += w;
	}
	return true;
}

/*
 * Create segment seg_start, zero-filled, unless it exists.  On failure
 * (a full disk, typically) reports at `elevel`, leaves nothing behind and
 * returns false with *err set.
 */
bool
segment_prepare(uint64 seg_start, int elevel, int *err)
{
	char		path[MAXPGPATH];
	char		tmppath[MAXPGPATH];
	int			fd;

	*err = 0;
	if (segment_exists(seg_start))
		return true;

	segment_path(seg_start, path, sizeof(path));
	snprintf(tmppath, sizeof(tmppath), "%s/%s%d", fleetlm_wal_directory,
			 FLEET_SEGMENT_TMP_PREFIX, MyProcPid);
	unlink(tmppath);
	fd = BasicOpenFilePerm(tmppath, O_RDWR | O_CREAT | O_EXCL | PG_BINARY,
						   S_IRUSR | S_IWUSR);
	if (fd < 0)
	{
		*err = errno;
		ereport(elevel,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\": %m", tmppath)));
		return false;
	}
	if (!segment_zero_fill(fd, 0, (off_t) fleet_shared->segment_size, err) ||
		pg_fsync(fd) != 0)
	{
		if (*err == 0)
			*err = errno;
		close(fd);
		unlink(tmppath);
		errno = *err;
		ereport(elevel,
				(errcode_for_file_access(),
				 errmsg("could not preallocate fleetlm WAL segment \"%s\": %m", path)));
		return false;
	}
	close(fd);

	LWLockAcquire(fleet_shared->segment_lock, LW_EXCLUSIVE);
	if (segment_exists(seg_start))
		unlink(tmppath);
	else if (durable_rename(tmppath, path, data_sync_elevel(elevel)) != 0)
	{
		*err = errno;
		LWLockRelease(fleet_shared->segment_lock);
		unlink(tmppath);
		return false;
	}
	LWLockRelease(fleet_shared->segment_lock);
	return true;
}

/*
 * Applier housekeeping: recycle segments wholly below `applied` into the
 * next ones the writer will need, preallocate what is still missing, and
 * remove the rest.  Off the append path: the writer only opens files.
 */
void
segment_maintain(uint64 applied, uint64 written)
{
	uint64		segsize = fleet_shared->segment_size;
	uint64		cur = segment_start(written);
	uint64	   *starts;
	int			n;
	int			next_old = 0;
	int			n_old = 0;
	char		path[MAXPGPATH];
	char		newpath[MAXPGPATH];
	bool		removed = false;

	n = segment_list(&starts);
	while (n_old < n && starts[n_old] + segsize <= applied && starts[n_old] < cur)
		n_old++;

	for (int k = 1; k <= FLEET_PREALLOC_SEGMENTS; k++)
	{
		uint64		want = cur + k * segsize;
		int			err;

		if (segment_exists(want))
			continue;
		if (next_old < n_old)
		{
			segment_path(starts[next_old], path, sizeof(path));
			segment_path(want, newpath, sizeof(newpath));
			LWLockAcquire(fleet_shared->segment_lock, LW_EXCLUSIVE);
			if (!segment_exists(want))
				(void) durable_rename(path, newpath, data_sync_elevel(LOG));
			LWLockRelease(fleet_shared->segment_lock);
			next_old++;
		}
		else
			(void) segment_prepare(want, LOG, &err);
	}

	for (; next_old < n_old; next_old++)
	{
		segment_path(starts[next_old], path, sizeof(path));
		LWLockAcquire(fleet_shared->segment_lock, LW_EXCLUSIVE);
		if (unlink(path) != 0 && errno != ENOENT)
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("could not remove file \"%s\": %m", path)));
		LWLockRelease(fleet_shared->segment_lock);
		removed = true;
	}
	if (removed)
		segment_fsync_dir();
	pfree(starts);
}

/*
 * End of recovery: the log ends at `end`.  Zero what follows it in its
 * segment and remove every later segment, so that no stale or torn bytes
 * past the end can ever be read as records once new ones are written
 * around them.
 */
void
segment_truncate_after(uint64 end)
{
	uint64		seg = segment_start(end);
	uint64	   *starts;
	int			n;
	int			fd;
	int			err;
	char		path[MAXPGPATH];

	fd = segment_open(seg, &err);
	if (fd >= 0)
	{
		segment_path(seg, path, sizeof(path));
		if (!segment_zero_fill(fd, (off_t) (end - seg),
							   (off_t) fleet_shared->segment_size, &err))
		{
			errno = err;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not write file \"%s\": %m", path)));
		}
		if (pg_fdatasync(fd) != 0)
			ereport(PANIC,
					(errcode_for_file_access(),
					 errmsg("could not fdatasync file \"%s\": %m", path)));
		close(fd);
	}
	else if (err != ENOENT)
	{
		errno = err;
		segment_path(seg, path, sizeof(path));
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\": %m", path)));
	}

	n = segment_list(&starts);
	for (int i = 0; i < n; i++)
	{
		if (starts[i] <= seg)
			continue;
		segment_path(starts[i], path, sizeof(path));
		if (unlink(path) != 0 && errno != ENOENT)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not remove file \"%s\": %m", path)));
	}
	pfree(starts);
	segment_fsync_dir();
}

/*
 * Keep a copy of a segment found corrupt, for forensics, before recovery
 * truncates it.  The copy's name is not a segment name, so it is never
 * replayed or recycled.
 */
void
segment_preserve(uint64 seg_start)
{
	char		path[MAXPGPATH];
	char		copy[MAXPGPATH];

	segment_path(seg_start, path, sizeof(path));
	snprintf(copy, sizeof(copy), "%s.corrupt." INT64_FORMAT, path,
			 (int64) GetCurrentTimestamp());
	copy_file(path, copy);
	ereport(LOG,
			(errmsg("fleetlm: kept a copy of corrupt WAL segment \"%s\" as \"%s\"",
					path, copy)));
}

void
segreader_init(SegmentReader *r)
{
	r->bufsize = (Size) Min((uint64) FLEET_READ_BUFFER, fleet_shared->segment_size);
	r->buf = palloc(r->bufsize);
	r->buf_start = r->buf_end = 0;
	r->fd = -1;
	r->fd_seg = 0;
}

/*
 * Copy len bytes at log position lsn from the segment files.  Returns false
 * if they are not all there (missing segment, short file).
 */
bool
segreader_read(SegmentReader *r, uint64 lsn, char *dst, Size len)
{
	while (len > 0)
	{
		if (lsn >= r->buf_start && lsn < r->buf_end)
		{
			Size		n = (Size) Min((uint64) len, r->buf_end - lsn);

			memcpy(dst, r->buf + (lsn - r->buf_start), n);
			dst += n;
			lsn += n;
			len -= n;
			continue;
		}
		else
		{
			uint64		seg = segment_start(lsn);
			Size		want;
			ssize_t		got;
			int			err;

			if (r->fd < 0 || r->fd_seg != seg)
			{
				if (r->fd >= 0)
					close(r->fd);
				r->fd = segment_open(seg, &err);
				r->fd_seg = seg;
				if (r->fd < 0)
				{
					char		path[MAXPGPATH];

					if (err == ENOENT)
						return false;
					errno = err;
					segment_path(seg, path, sizeof(path));
					ereport(ERROR,
							(errcode_for_file_access(),
							 errmsg("could not open file \"%s\": %m", path)));
				}
			}
			want = (Size) Min((uint64) r->bufsize, seg + fleet_shared->segment_size - lsn);
			got = pg_pread(r->fd, r->buf, want, (off_t) (lsn - seg));
			if (got < 0)
			{
				char		path[MAXPGPATH];

				segment_path(seg, path, sizeof(path));
				ereport(ERROR,
						(errcode_for_file_access(),
						 errmsg("could not read file \"%s\": %m", path)));
			}
			if (got == 0)
				return false;
			r->buf_start = lsn;
			r->buf_end = lsn + got;
		}
	}
	return true;
}

void
segreader_close(SegmentReader *r)
{
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	pfree(r->buf);
}

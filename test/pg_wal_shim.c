/*-------------------------------------------------------------------------
 *
 * pg_wal_shim.c
 *	  LD_PRELOAD shim for TAP 033: makes fsync and fdatasync of PostgreSQL's
 *	  own WAL files (pg_wal/) block while the file named by
 *	  $FLEETLM_STALL_PG_WAL exists: a process flushing PostgreSQL's WAL then
 *	  holds WALWriteLock and every later XLogFlush waits behind it, so WAL
 *	  records inserted meanwhile stay in shared memory and die with a
 *	  kill -9.  Other files are not touched (test/fsync_shim.c stalls the
 *	  fleetlm WAL instead).
 *
 * test/pg_wal_shim.c
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int
stalled(int fd)
{
	const char *trigger = getenv("FLEETLM_STALL_PG_WAL");
	struct stat st;
	char		link[64];
	char		path[4096];
	ssize_t		n;

	if (trigger == NULL || stat(trigger, &st) != 0)
		return 0;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	if (n <= 0)
		return 0;
	path[n] = '\0';
	return strstr(path, "/pg_wal/") != NULL;
}

/* wait while stalled, then call the real function `name` (cached in *real) */
static int
stall_then(const char *name, int (**real) (int), int fd)
{
	if (*real == NULL)
		*real = (int (*) (int)) dlsym(RTLD_NEXT, name);
	while (stalled(fd))
		usleep(10000);
	return (*real) (fd);
}

int
fdatasync(int fd)
{
	static int	(*real) (int) = NULL;

	return stall_then("fdatasync", &real, fd);
}

int
fsync(int fd)
{
	static int	(*real) (int) = NULL;

	return stall_then("fsync", &real, fd);
}

/*-------------------------------------------------------------------------
 *
 * fsync_shim.c
 *	  LD_PRELOAD shim for the fault tests: makes fdatasync on fleetlm WAL
 *	  files fail (EIO) while the file named by $FLEETLM_FAIL_FSYNC exists,
 *	  and block while the file named by $FLEETLM_STALL_FSYNC exists (a
 *	  stalled disk).  Other files are not touched.
 *
 * test/fsync_shim.c
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int
exists(const char *envvar)
{
	const char *path = getenv(envvar);
	struct stat st;

	return path != NULL && stat(path, &st) == 0;
}

static int
is_fleetlm_wal(int fd)
{
	char		link[64];
	char		path[4096];
	ssize_t		n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	if (n <= 0)
		return 0;
	path[n] = '\0';
	return strstr(path, "/fleetlm_wal/") != NULL;
}

int
fdatasync(int fd)
{
	static int	(*real) (int) = NULL;

	if (real == NULL)
		real = (int (*) (int)) dlsym(RTLD_NEXT, "fdatasync");
	if (is_fleetlm_wal(fd))
	{
		while (exists("FLEETLM_STALL_FSYNC"))
			usleep(10000);
		if (exists("FLEETLM_FAIL_FSYNC"))
		{
			errno = EIO;
			return -1;
		}
	}
	return real(fd);
}

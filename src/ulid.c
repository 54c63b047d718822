/*-------------------------------------------------------------------------
 *
 * ulid.c
 *	  ULIDs: the session ids create_session makes up when given none.
 *
 * A ULID is 48 bits of milliseconds since the Unix epoch and 80 random
 * bits, written as 26 characters of Crockford's base32, so ids sort by
 * creation time.
 *
 * src/ulid.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/time.h>

#include "ulid.h"

/*
 * Write a new ULID and its terminating NUL into out[ULID_LEN + 1].
 */
void
ulid_generate(char *out)
{
	static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
	uint64		ms;
	uint8		rnd[10];
	int			i;
	struct timeval tv;

	gettimeofday(&tv, NULL);
	ms = (uint64) tv.tv_sec * 1000 + tv.tv_usec / 1000;
	if (!pg_strong_random(rnd, sizeof(rnd)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random session id")));

	/* 48 bits of time = 10 characters of 5 bits (the first holds 3) */
	for (i = 9; i >= 0; i--)
	{
		out[i] = alphabet[ms & 31];
		ms >>= 5;
	}
	/* 80 random bits = 16 characters of 5 bits */
	for (i = 0; i < 16; i++)
	{
		int			bit = i * 5;
		int			byte = bit / 8;
		int			shift = bit % 8;
		unsigned	v = ((unsigned) rnd[byte] << 8) | (byte + 1 < 10 ? rnd[byte + 1] : 0);

		out[10 + i] = alphabet[(v >> (11 - shift)) & 31];
	}
	out[ULID_LEN] = '\0';
}

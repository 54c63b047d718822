/*-------------------------------------------------------------------------
 *
 * ulid.h
 *	  ULIDs: the session ids create_session makes up when given none.
 *
 * src/ulid.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_ULID_H
#define FLEETLM_ULID_H

/* Characters of a ULID, without the terminating NUL */
#define ULID_LEN	26

extern void ulid_generate(char *out);

#endif							/* FLEETLM_ULID_H */

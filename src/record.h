/*-------------------------------------------------------------------------
 *
 * record.h
 *	  The log record format, shared by the ring, the WAL files and the
 *	  readers.  Bytes on disk are exactly the bytes in the ring.
 *
 * A record starts at an 8-byte aligned position and occupies
 * MAXALIGN(total_len) bytes.  Fields are in the server's native byte order:
 * like PostgreSQL's own WAL, fleetlm's WAL is not portable across
 * architectures.
 *
 * Payload layout after the header:
 *		content jsonb varlena		(padded to 8 bytes)
 *		metadata jsonb varlena		(padded to 8 bytes)
 *		session id, sender id, recipient id, kind, idempotency key
 *									(unterminated, no padding)
 * A DELETE_SESSION record carries only the session id.
 *
 * A record is valid iff its length is sane, its `lsn` equals its position
 * and its CRC matches.  The first invalid record ends the log.
 *
 * src/record.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_RECORD_H
#define FLEETLM_RECORD_H

#include "port/pg_crc32c.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

/* Record types */
#define FLEET_REC_APPEND			1
#define FLEET_REC_DELETE_SESSION	2

/* Flags */
#define FLEET_RECF_MORE			0x01	/* more records of one atomic group follow */

/* Hard upper bound of a record, whatever the GUCs say (sanity check) */
#define FLEET_MAX_RECORD_LEN	(1024 * 1024 * 1024)

typedef struct FleetRecordHeader
{
	uint32		total_len;		/* header + payload, without padding */
	pg_crc32c	crc;			/* payload, then header after this field,
								 * then total_len */
	uint64		lsn;			/* position of this record */
	uint64		prev_lsn;		/* previous record of the session, or 0 */
	int64		seq;			/* per-session sequence number */
	TimestampTz created_at;		/* time of the append */
	uint8		type;			/* FLEET_REC_* */
	uint8		flags;			/* FLEET_RECF_* */
	uint16		session_len;
	uint16		sender_len;
	uint16		recipient_len;	/* 0: no recipient */
	uint16		kind_len;
	uint16		key_len;		/* idempotency key, 0: none */
	uint32		content_len;	/* jsonb varlena, including its header */
	uint32		metadata_len;	/* jsonb varlena, including its header */
	uint32		reserved;		/* zero */
} FleetRecordHeader;

StaticAssertDecl(sizeof(FleetRecordHeader) == 64, "record header must stay 64 bytes");

/* A decoded record: pointers into a private, aligned copy */
typedef struct FleetRecord
{
	FleetRecordHeader *hdr;
	Jsonb	   *content;
	Jsonb	   *metadata;
	const char *session_id;
	const char *sender_id;
	const char *recipient_id;
	const char *kind;
	const char *key;
} FleetRecord;

/* Input of record_build */
typedef struct FleetRecordInput
{
	uint8		type;
	const char *session_id;
	const char *sender_id;
	const char *recipient_id;	/* NULL: none */
	const char *kind;
	const char *key;			/* NULL: none */
	Jsonb	   *content;
	Jsonb	   *metadata;
	TimestampTz created_at;
} FleetRecordInput;

#define FLEET_REC_ALIGN(len)	TYPEALIGN(8, (len))

extern Size record_payload_size(const FleetRecordInput *in);
extern char *record_build(const FleetRecordInput *in, Size *total_len,
						  pg_crc32c *payload_crc);
extern void record_finish(FleetRecordHeader *hdr, pg_crc32c payload_crc);
extern bool record_header_sane(const FleetRecordHeader *hdr, uint64 lsn);
extern bool record_crc_ok(const char *rec);
extern void record_decode(char *rec, FleetRecord *out);
extern char *record_text(const char *p, uint16 len);
extern Size record_session_offset(const FleetRecordHeader *hdr);
extern int64 record_key_turn(const char *key, int len);

#endif							/* FLEETLM_RECORD_H */

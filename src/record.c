/*-------------------------------------------------------------------------
 *
 * record.c
 *	  Building, checking and decoding fleetlm log records.
 *
 * The CRC is computed the way PostgreSQL computes xl_crc: over the payload
 * first (done outside any lock, when the record is built), then over the
 * header fields that are only known once the record has its position
 * (filled in under the insert lock).
 *
 * src/record.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "record.h"

#define HDR_CRC_START	offsetof(FleetRecordHeader, lsn)

static Size record_expected_len(const FleetRecordHeader *hdr);

/*
 * Bytes of payload that a record built from `in` carries.
 */
Size
record_payload_size(const FleetRecordInput *in)
{
	Size		size = 0;

	if (in->content)
		size += FLEET_REC_ALIGN(VARSIZE(in->content));
	if (in->metadata)
		size += FLEET_REC_ALIGN(VARSIZE(in->metadata));
	size += strlen(in->session_id);
	if (in->sender_id)
		size += strlen(in->sender_id);
	if (in->recipient_id)
		size += strlen(in->recipient_id);
	if (in->kind)
		size += strlen(in->kind);
	if (in->key)
		size += strlen(in->key);
	return size;
}

static char *
put_string(char *p, const char *s, uint16 *len)
{
	size_t		n = s ? strlen(s) : 0;

	Assert(n <= PG_UINT16_MAX);
	*len = (uint16) n;
	if (n > 0)
		memcpy(p, s, n);
	return p + n;
}

/*
 * Build a record (header without position, seq and CRC) in a zeroed,
 * 8-byte padded palloc'd buffer.  Returns the buffer; *total_len gets the
 * unpadded length and *payload_crc the running (unfinished) CRC of the
 * payload, for record_finish().
 */
char *
record_build(const FleetRecordInput *in, Size *total_len, pg_crc32c *payload_crc)
{
	Size		len = sizeof(FleetRecordHeader) + record_payload_size(in);
	char	   *buf;
	FleetRecordHeader *hdr;
	char	   *p;
	pg_crc32c	crc;

	buf = palloc0(FLEET_REC_ALIGN(len));
	hdr = (FleetRecordHeader *) buf;
	hdr->total_len = (uint32) len;
	hdr->type = in->type;
	hdr->created_at = in->created_at;

	p = buf + sizeof(FleetRecordHeader);
	if (in->content)
	{
		hdr->content_len = VARSIZE(in->content);
		memcpy(p, in->content, hdr->content_len);
		p += FLEET_REC_ALIGN(hdr->content_len);
	}
	if (in->metadata)
	{
		hdr->metadata_len = VARSIZE(in->metadata);
		memcpy(p, in->metadata, hdr->metadata_len);
		p += FLEET_REC_ALIGN(hdr->metadata_len);
	}
	p = put_string(p, in->session_id, &hdr->session_len);
	p = put_string(p, in->sender_id, &hdr->sender_len);
	p = put_string(p, in->recipient_id, &hdr->recipient_len);
	p = put_string(p, in->kind, &hdr->kind_len);
	p = put_string(p, in->key, &hdr->key_len);
	Assert(p == buf + len);

	INIT_CRC32C(crc);
	COMP_CRC32C(crc, buf + sizeof(FleetRecordHeader), len - sizeof(FleetRecordHeader));
	*payload_crc = crc;
	*total_len = len;
	return buf;
}

/*
 * Complete the CRC once lsn, prev_lsn, seq and flags are set.
 */
void
record_finish(FleetRecordHeader *hdr, pg_crc32c payload_crc)
{
	pg_crc32c	crc = payload_crc;

	COMP_CRC32C(crc, ((char *) hdr) + HDR_CRC_START,
				sizeof(FleetRecordHeader) - HDR_CRC_START);
	COMP_CRC32C(crc, (char *) &hdr->total_len, sizeof(hdr->total_len));
	FIN_CRC32C(crc);
	hdr->crc = crc;
}

static Size
record_expected_len(const FleetRecordHeader *hdr)
{
	return sizeof(FleetRecordHeader) +
		FLEET_REC_ALIGN((Size) hdr->content_len) +
		FLEET_REC_ALIGN((Size) hdr->metadata_len) +
		hdr->session_len + hdr->sender_len + hdr->recipient_len +
		hdr->kind_len + hdr->key_len;
}

/*
 * Cheap checks of a header found at position `lsn`, before its CRC is
 * computed: a stale record left in a recycled segment fails the lsn check,
 * zeroes fail the length check.
 */
bool
record_header_sane(const FleetRecordHeader *hdr, uint64 lsn)
{
	if (hdr->total_len < sizeof(FleetRecordHeader) ||
		hdr->total_len > FLEET_MAX_RECORD_LEN)
		return false;
	if (hdr->lsn != lsn)
		return false;
	if (hdr->type != FLEET_REC_APPEND && hdr->type != FLEET_REC_DELETE_SESSION)
		return false;
	if (hdr->session_len == 0 || hdr->reserved != 0)
		return false;
	if (hdr->prev_lsn >= lsn)
		return false;
	if (record_expected_len(hdr) != hdr->total_len)
		return false;
	return true;
}

/*
 * Does the CRC of a complete record (header_sane already true) match?
 */
bool
record_crc_ok(const char *rec)
{
	const FleetRecordHeader *hdr = (const FleetRecordHeader *) rec;
	pg_crc32c	crc;

	INIT_CRC32C(crc);
	COMP_CRC32C(crc, rec + sizeof(FleetRecordHeader),
				hdr->total_len - sizeof(FleetRecordHeader));
	COMP_CRC32C(crc, rec + HDR_CRC_START,
				sizeof(FleetRecordHeader) - HDR_CRC_START);
	COMP_CRC32C(crc, (const char *) &hdr->total_len, sizeof(hdr->total_len));
	FIN_CRC32C(crc);
	return EQ_CRC32C(crc, hdr->crc);
}

/*
 * Point the fields of `out` into a record copy that starts at a MAXALIGNed
 * address (so the jsonb values are aligned).  Strings are not terminated;
 * use record_text() or the lengths in the header.
 */
void
record_decode(char *rec, FleetRecord *out)
{
	FleetRecordHeader *hdr = (FleetRecordHeader *) rec;
	char	   *p = rec + sizeof(FleetRecordHeader);

	out->hdr = hdr;
	out->content = NULL;
	out->metadata = NULL;
	if (hdr->content_len > 0)
	{
		out->content = (Jsonb *) p;
		p += FLEET_REC_ALIGN(hdr->content_len);
	}
	if (hdr->metadata_len > 0)
	{
		out->metadata = (Jsonb *) p;
		p += FLEET_REC_ALIGN(hdr->metadata_len);
	}
	out->session_id = p;
	p += hdr->session_len;
	out->sender_id = p;
	p += hdr->sender_len;
	out->recipient_id = p;
	p += hdr->recipient_len;
	out->kind = p;
	p += hdr->kind_len;
	out->key = p;
}

/*
 * Offset of the session id from the start of a record: what a reader that
 * has only the header needs to read the id alone.
 */
Size
record_session_offset(const FleetRecordHeader *hdr)
{
	return sizeof(FleetRecordHeader) + FLEET_REC_ALIGN(hdr->content_len) +
		FLEET_REC_ALIGN(hdr->metadata_len);
}

/*
 * A palloc'd, terminated copy of an unterminated record string.
 */
char *
record_text(const char *p, uint16 len)
{
	return pnstrdup(p, len);
}

/*
 * T of an idempotency key 'turn:<T>' (the key of an agent's answer to turn
 * T, dispatch.c), or 0 if the key is not one.  key is not NUL-terminated.
 */
int64
record_key_turn(const char *key, int len)
{
	int64		t = 0;

	if (len <= 5 || len > 24 || memcmp(key, "turn:", 5) != 0)
		return 0;
	for (int i = 5; i < len; i++)
	{
		if (key[i] < '0' || key[i] > '9')
			return 0;
		t = t * 10 + (key[i] - '0');
	}
	return t;
}

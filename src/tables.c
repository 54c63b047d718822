/*-------------------------------------------------------------------------
 *
 * tables.c
 *	  Direct reads of fleetlm.sessions and fleetlm.messages through their
 *	  primary-key indexes: a session's row and its last seq (the miss path
 *	  of the session table), and a range of its messages (the table part
 *	  of a read).
 *
 * Both used to be SPI queries.  On the hot paths, an append to a session
 * that is not in the session table and a replay of a session, the query's
 * overhead (plan-cache revalidation, executor set-up, a copy of every row
 * into SPI's tuple table and another into the caller's tuplestore) cost
 * more than the index descents it ran.  Here the relations are opened with
 * AccessShareLock, held to the end of the transaction as the executor
 * holds it, and scanned with index_beginscan on the caller's snapshot;
 * message rows go from the heap straight into the caller's tuplestore.
 *
 * Privileges: the SPI queries ran as the extension's owner, so that the
 * fleetlm_reader and fleetlm_writer roles need no privilege on the tables.
 * A direct scan makes no ACL check at all (as catalog scans make none),
 * which comes to the same: the caller's rights on the tables were never
 * the question.  No user code runs: the scan keys use the built-in texteq
 * and int8gt, and the tables have no row security.
 *
 * The relations are found by name in schema fleetlm.  Their OIDs and those
 * of their primary keys are cached per backend and forgotten on a relcache
 * invalidation of any of them (or of all relations) and on any change to
 * pg_namespace; a lookup that raced with such a change is repeated once
 * the locks are held.  After every lookup their shape is checked: the
 * columns read here, by name, type and position (all nine of messages, as
 * its rows are returned whole as fleetlm.messages rows), and a btree
 * primary key on (session_id) and (session_id, seq), ascending.  Anything
 * else is an ERROR, never a wrong answer.
 *
 * src/tables.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "tables.h"

/* A column this file relies on: its name and type, at its position */
typedef struct TablesColumn
{
	const char *name;
	Oid			type;
} TablesColumn;

/* The first columns of fleetlm.sessions; the others are not read */
static const TablesColumn tables_sessions_cols[] = {
	{"session_id", TEXTOID},
	{"user_id", TEXTOID},
	{"agent_id", TEXTOID},
};

/* All of fleetlm.messages: its rows are returned as they are */
static const TablesColumn tables_messages_cols[] = {
	{"session_id", TEXTOID},
	{"seq", INT8OID},
	{"sender_id", TEXTOID},
	{"recipient_id", TEXTOID},
	{"kind", TEXTOID},
	{"content", JSONBOID},
	{"metadata", JSONBOID},
	{"inserted_at", TIMESTAMPTZOID},
	{"idempotency_key", TEXTOID},
};

/* The two tables and their primary keys, open and locked */
typedef struct TablesRels
{
	Relation	sessions;
	Relation	sessions_pkey;
	Relation	messages;
	Relation	messages_pkey;
} TablesRels;

/* Cached OIDs, good while tables_valid; else looked up again */
static bool tables_valid = false;
static Oid	tables_sessions_relid = InvalidOid;
static Oid	tables_sessions_pkeyid = InvalidOid;
static Oid	tables_messages_relid = InvalidOid;
static Oid	tables_messages_pkeyid = InvalidOid;

/* Bumped by every invalidation that forgets the OIDs */
static uint64 tables_inval_count = 0;
static bool tables_callbacks = false;

static void tables_forget(void);
static void tables_relcache_callback(Datum arg, Oid relid);
static void tables_syscache_callback(Datum arg, int cacheid, uint32 hashvalue);
static Oid	tables_relid(const char *relname);
static Oid	tables_check_table(Relation rel, const TablesColumn *cols,
							   int ncols, bool all);
static void tables_check_pkey(Relation rel, Relation index, int nkeys);
static void tables_open(TablesRels *r);
static void tables_close(TablesRels *r);
static bool tables_find_session(TablesRels *r, Snapshot snapshot, Datum key,
								FleetSessionInfo *out, TransactionId *xmin);
static IndexScanDesc tables_begin_messages(TablesRels *r, Snapshot snapshot,
										   Datum key, bool after, int64 after_seq);

/*
 * Forget the cached OIDs, and tell a tables_open in progress that its
 * lookup may be stale.
 */
static void
tables_forget(void)
{
	tables_valid = false;
	tables_inval_count++;
}

/*
 * A relcache invalidation: forget the OIDs if it concerns one of our
 * relations (a drop, an ALTER, a changed index list) or all relations.
 */
static void
tables_relcache_callback(Datum arg, Oid relid)
{
	if (!OidIsValid(relid) ||
		relid == tables_sessions_relid || relid == tables_sessions_pkeyid ||
		relid == tables_messages_relid || relid == tables_messages_pkeyid)
		tables_forget();
}

/* A change to pg_namespace (the schema renamed or dropped): forget them */
static void
tables_syscache_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	tables_forget();
}

/*
 * The OID of fleetlm.<relname>, or an ERROR.
 */
static Oid
tables_relid(const char *relname)
{
	Oid			nsp = get_namespace_oid("fleetlm", true);
	Oid			relid = InvalidOid;

	if (OidIsValid(nsp))
		relid = get_relname_relid(relname, nsp);
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("fleetlm: relation \"fleetlm.%s\" does not exist", relname)));
	return relid;
}

/*
 * Check that rel is an ordinary table whose first ncols columns are cols
 * (all its columns when `all`), and return the OID of its primary key.
 */
static Oid
tables_check_table(Relation rel, const TablesColumn *cols, int ncols, bool all)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Oid			pkey;

	if (rel->rd_rel->relkind != RELKIND_RELATION)
		elog(ERROR, "fleetlm: fleetlm.%s is not an ordinary table",
			 RelationGetRelationName(rel));
	if (all ? desc->natts != ncols : desc->natts < ncols)
		elog(ERROR, "fleetlm: unexpected row type of fleetlm.%s (%d columns)",
			 RelationGetRelationName(rel), desc->natts);
	for (int i = 0; i < ncols; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped ||
			strcmp(NameStr(att->attname), cols[i].name) != 0 ||
			att->atttypid != cols[i].type)
			elog(ERROR, "fleetlm: unexpected row type of fleetlm.%s: column %d is not %s %s",
				 RelationGetRelationName(rel), i + 1, cols[i].name,
				 format_type_be(cols[i].type));
	}
	pkey = RelationGetPrimaryKeyIndex(rel);
	if (!OidIsValid(pkey))
		elog(ERROR, "fleetlm: fleetlm.%s has no primary key",
			 RelationGetRelationName(rel));
	return pkey;
}

/*
 * Check that index is a btree on the first nkeys columns of rel, in
 * order, ascending, with the default ordering of text and bigint: what the
 * scan keys and the scan directions below assume.
 */
static void
tables_check_pkey(Relation rel, Relation index, int nkeys)
{
	Form_pg_index ind = index->rd_index;
	bool		ok;

	ok = index->rd_rel->relam == BTREE_AM_OID &&
		ind->indrelid == RelationGetRelid(rel) &&
		ind->indnkeyatts == nkeys &&
		RelationGetIndexExpressions(index) == NIL;
	for (int i = 0; ok && i < nkeys; i++)
		ok = ind->indkey.values[i] == i + 1 &&
			index->rd_opcintype[i] == (i == 0 ? TEXTOID : INT8OID) &&
			index->rd_indoption[i] == 0;
	if (!ok)
		elog(ERROR, "fleetlm: unexpected primary key \"%s\" of fleetlm.%s",
			 RelationGetRelationName(index), RelationGetRelationName(rel));
}

/*
 * Open and lock both tables and their primary keys.  The locks stay until
 * the end of the transaction.  OIDs cached from an earlier call are used
 * if no invalidation has arrived since; taking the locks processes pending
 * invalidations, so a lookup that raced with a DROP or an ALTER is done
 * again.
 */
static void
tables_open(TablesRels *r)
{
	if (!tables_callbacks)
	{
		CacheRegisterRelcacheCallback(tables_relcache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(NAMESPACEOID, tables_syscache_callback,
									  (Datum) 0);
		tables_callbacks = true;
	}

	for (;;)
	{
		uint64		count;
		bool		fresh = false;

		if (!tables_valid)
		{
			tables_sessions_relid = tables_relid("sessions");
			tables_messages_relid = tables_relid("messages");
			tables_sessions_pkeyid = InvalidOid;
			tables_messages_pkeyid = InvalidOid;
			fresh = true;
		}
		count = tables_inval_count;
		r->sessions = try_table_open(tables_sessions_relid, AccessShareLock);
		r->messages = try_table_open(tables_messages_relid, AccessShareLock);
		if (r->sessions != NULL && r->messages != NULL &&
			count == tables_inval_count)
		{
			if (fresh)
			{
				tables_sessions_pkeyid =
					tables_check_table(r->sessions, tables_sessions_cols,
									   lengthof(tables_sessions_cols), false);
				tables_messages_pkeyid =
					tables_check_table(r->messages, tables_messages_cols,
									   lengthof(tables_messages_cols), true);
			}
			r->sessions_pkey = index_open(tables_sessions_pkeyid, AccessShareLock);
			r->messages_pkey = index_open(tables_messages_pkeyid, AccessShareLock);
			if (fresh)
			{
				tables_check_pkey(r->sessions, r->sessions_pkey, 1);
				tables_check_pkey(r->messages, r->messages_pkey, 2);
			}
			if (count == tables_inval_count)
			{
				tables_valid = true;
				return;
			}
			index_close(r->sessions_pkey, NoLock);
			index_close(r->messages_pkey, NoLock);
		}
		if (r->sessions != NULL)
			table_close(r->sessions, NoLock);
		if (r->messages != NULL)
			table_close(r->messages, NoLock);
		tables_forget();
	}
}

/*
 * Close what tables_open opened; the locks are kept until the end of the
 * transaction, as the executor keeps them.
 */
static void
tables_close(TablesRels *r)
{
	index_close(r->messages_pkey, NoLock);
	index_close(r->sessions_pkey, NoLock);
	table_close(r->messages, NoLock);
	table_close(r->sessions, NoLock);
}

/*
 * Is there a row of session `key` (a text datum) in fleetlm.sessions
 * visible to snapshot?  If so and out is not NULL, fill out's parties and
 * *xmin with the row's xmin.
 */
static bool
tables_find_session(TablesRels *r, Snapshot snapshot, Datum key,
					FleetSessionInfo *out, TransactionId *xmin)
{
	ScanKeyData skey;
	IndexScanDesc scan;
	TupleTableSlot *slot = table_slot_create(r->sessions, NULL);
	bool		found;

	ScanKeyEntryInitialize(&skey, 0, 1, BTEqualStrategyNumber, InvalidOid,
						   r->sessions_pkey->rd_indcollation[0], F_TEXTEQ, key);
	scan = index_beginscan(r->sessions, r->sessions_pkey, snapshot, 1, 0);
	index_rescan(scan, &skey, 1, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	if (found && out != NULL)
	{
		bool		isnull;
		Datum		d;

		d = slot_getattr(slot, 2, &isnull);
		out->user_id[0] = '\0';
		if (!isnull)
			text_to_cstring_buffer(DatumGetTextPP(d), out->user_id,
								   sizeof(out->user_id));
		d = slot_getattr(slot, 3, &isnull);
		out->agent_id[0] = '\0';
		if (!isnull)
			text_to_cstring_buffer(DatumGetTextPP(d), out->agent_id,
								   sizeof(out->agent_id));
		d = slot_getsysattr(slot, MinTransactionIdAttributeNumber, &isnull);
		*xmin = DatumGetTransactionId(d);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	return found;
}

/*
 * Begin a scan of the messages' primary key over the rows of session `key`
 * (a text datum), with seq > after_seq when `after`; the caller picks the
 * direction and ends the scan.
 */
static IndexScanDesc
tables_begin_messages(TablesRels *r, Snapshot snapshot, Datum key, bool after,
					  int64 after_seq)
{
	ScanKeyData skeys[2];
	int			nkeys = after ? 2 : 1;
	IndexScanDesc scan;

	ScanKeyEntryInitialize(&skeys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   r->messages_pkey->rd_indcollation[0], F_TEXTEQ, key);
	if (after)
		ScanKeyEntryInitialize(&skeys[1], 0, 2, BTGreaterStrategyNumber,
							   InvalidOid, r->messages_pkey->rd_indcollation[1],
							   F_INT8GT, Int64GetDatum(after_seq));
	scan = index_beginscan(r->messages, r->messages_pkey, snapshot, nkeys, 0);
	index_rescan(scan, skeys, nkeys, NULL, 0);
	return scan;
}

/*
 * Read session `session_id` as `snapshot` sees the tables: its row (the
 * parties in *out, the row's xmin in *xmin) and the largest seq of its
 * messages (0 if none), the first row of a backward scan of the messages'
 * primary key.  Returns false, and leaves *out alone, if there is no row.
 */
bool
tables_session_info(const char *session_id, Snapshot snapshot,
					FleetSessionInfo *out, TransactionId *xmin)
{
	TablesRels	r;
	text	   *key = cstring_to_text(session_id);
	bool		found;

	snapshot = RegisterSnapshot(snapshot);
	tables_open(&r);
	found = tables_find_session(&r, snapshot, PointerGetDatum(key), out, xmin);
	if (found)
	{
		IndexScanDesc scan;
		TupleTableSlot *slot = table_slot_create(r.messages, NULL);

		scan = tables_begin_messages(&r, snapshot, PointerGetDatum(key), false, 0);
		out->last_seq = 0;
		if (index_getnext_slot(scan, BackwardScanDirection, slot))
		{
			bool		isnull;
			Datum		d = slot_getattr(slot, 2, &isnull);

			if (!isnull)
				out->last_seq = DatumGetInt64(d);
		}
		index_endscan(scan);
		ExecDropSingleTupleTableSlot(slot);
	}
	tables_close(&r);
	UnregisterSnapshot(snapshot);
	pfree(key);
	return found;
}

/*
 * Put the messages of session `session_id` with seq > after_seq, at most
 * max_count, in seq order, into `store` as `snapshot` sees them: the heap
 * rows as they are (fleetlm.messages rows).  *count gets how many.  Returns
 * whether the session's row exists; if not, nothing is read.
 */
bool
tables_read_messages(const char *session_id, int64 after_seq, int32 max_count,
					 Snapshot snapshot, Tuplestorestate *store, int64 *count)
{
	TablesRels	r;
	text	   *key = cstring_to_text(session_id);
	bool		exists;

	*count = 0;
	snapshot = RegisterSnapshot(snapshot);
	tables_open(&r);
	exists = tables_find_session(&r, snapshot, PointerGetDatum(key), NULL, NULL);
	if (exists)
	{
		IndexScanDesc scan;
		TupleTableSlot *slot = table_slot_create(r.messages, NULL);

		scan = tables_begin_messages(&r, snapshot, PointerGetDatum(key), true,
									 after_seq);
		while (*count < max_count &&
			   index_getnext_slot(scan, ForwardScanDirection, slot))
		{
			CHECK_FOR_INTERRUPTS();
			tuplestore_puttupleslot(store, slot);
			(*count)++;
		}
		index_endscan(scan);
		ExecDropSingleTupleTableSlot(slot);
	}
	tables_close(&r);
	UnregisterSnapshot(snapshot);
	pfree(key);
	return exists;
}

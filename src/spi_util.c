/*-------------------------------------------------------------------------
 *
 * spi_util.c
 *	  SPI helpers: statements run with the privileges of the extension's
 *	  owner (as PostgreSQL does for maintenance work on a table), so that
 *	  the fleetlm_reader and fleetlm_writer roles need EXECUTE on functions
 *	  and nothing on the tables.
 *
 * src/spi_util.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "miscadmin.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "spi_util.h"

/* cached owner of the extension; InvalidOid: look it up */
static Oid	fleet_owner_cache = InvalidOid;
static bool fleet_owner_callback = false;

static void fleet_owner_invalidate(Datum arg, int cacheid, uint32 hashvalue);

static void
fleet_owner_invalidate(Datum arg, int cacheid, uint32 hashvalue)
{
	fleet_owner_cache = InvalidOid;
}

/*
 * Owner of the fleetlm extension in the current database.
 */
Oid
fleet_extension_owner(void)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			owner = InvalidOid;

	if (OidIsValid(fleet_owner_cache))
		return fleet_owner_cache;
	if (!fleet_owner_callback)
	{
		CacheRegisterSyscacheCallback(NAMESPACEOID, fleet_owner_invalidate, (Datum) 0);
		fleet_owner_callback = true;
	}

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("fleetlm"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		owner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);

	if (!OidIsValid(owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("extension \"fleetlm\" does not exist in this database")));
	fleet_owner_cache = owner;
	return owner;
}

/*
 * SPI_connect, then act as the extension owner until fleet_spi_finish().
 * An error in between restores the user at (sub)transaction abort.
 */
void
fleet_spi_connect(FleetSpiContext *ctx)
{
	Oid			owner = fleet_extension_owner();

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	GetUserIdAndSecContext(&ctx->save_userid, &ctx->save_sec_context);
	SetUserIdAndSecContext(owner, ctx->save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
}

void
fleet_spi_finish(FleetSpiContext *ctx)
{
	SetUserIdAndSecContext(ctx->save_userid, ctx->save_sec_context);
	SPI_finish();
}

/*
 * A saved plan for `sql`, prepared on first use in this process.
 */
SPIPlanPtr
fleet_spi_plan(SPIPlanPtr *cache, const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan;

	if (*cache != NULL)
		return *cache;
	plan = SPI_prepare(sql, nargs, argtypes);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	*cache = plan;
	return plan;
}

/*-------------------------------------------------------------------------
 *
 * spi_util.h
 *	  SPI helpers shared by the SQL functions and the applier: run as the
 *	  extension's owner, keep prepared plans.
 *
 * Every statement fleetlm runs is parameterised and names every object
 * with its schema (operators as OPERATOR(pg_catalog.=)), so it means the
 * same whatever search_path the caller has.
 *
 * src/spi_util.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_SPI_UTIL_H
#define FLEETLM_SPI_UTIL_H

#include "executor/spi.h"

typedef struct FleetSpiContext
{
	Oid			save_userid;
	int			save_sec_context;
} FleetSpiContext;

extern void fleet_spi_connect(FleetSpiContext *ctx);
extern void fleet_spi_finish(FleetSpiContext *ctx);
extern SPIPlanPtr fleet_spi_plan(SPIPlanPtr *cache, const char *sql,
								 int nargs, Oid *argtypes);
extern Oid	fleet_extension_owner(void);

#endif							/* FLEETLM_SPI_UTIL_H */

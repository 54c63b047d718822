/*-------------------------------------------------------------------------
 *
 * batch.h
 *	  The messages argument of append_batch, checked and turned into
 *	  record inputs.
 *
 * src/batch.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_BATCH_H
#define FLEETLM_BATCH_H

#include "record.h"

extern int	batch_parse(Jsonb *batch, FleetRecordInput **out);

#endif							/* FLEETLM_BATCH_H */

/*-------------------------------------------------------------------------
 *
 * pipeline.h
 *	  One durability wait for a pipeline of appends (see pipeline.c).
 *
 * src/pipeline.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_PIPELINE_H
#define FLEETLM_PIPELINE_H

extern bool pipeline_can_defer(void);
extern void pipeline_defer(uint64 end);
extern uint64 pipeline_owed_position(void);
extern void pipeline_done(uint64 durable);
extern void pipeline_settle(void);
extern void pipeline_abandon(void);

#endif							/* FLEETLM_PIPELINE_H */

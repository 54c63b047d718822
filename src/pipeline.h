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
extern void pipeline_settle(void);
extern void pipeline_wait_durable(uint64 end, const char *session_id, int64 seq);
extern void pipeline_abandon(void);

#endif							/* FLEETLM_PIPELINE_H */

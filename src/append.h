/*-------------------------------------------------------------------------
 *
 * append.h
 *	  The write path of the log: seq assignment, ring insertion and the
 *	  wait for durability (see append.c).
 *
 * src/append.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_APPEND_H
#define FLEETLM_APPEND_H

extern void append_read_own_writes(void);

#endif							/* FLEETLM_APPEND_H */

/*-------------------------------------------------------------------------
 *
 * longpoll.h
 *	  Waking the long-pollers (wait_for_messages) of the sessions whose
 *	  records a flush round made durable, and no others.
 *
 * src/longpoll.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_LONGPOLL_H
#define FLEETLM_LONGPOLL_H

extern void longpoll_register(uint32 hashcode);
extern void longpoll_unregister(void);
extern void longpoll_publish_durable(uint64 from, uint64 to);
extern void longpoll_wake_collected(void);
extern bool longpoll_wake_now(uint32 hashcode);

#endif							/* FLEETLM_LONGPOLL_H */

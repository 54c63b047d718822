/*-------------------------------------------------------------------------
 *
 * secrets.h
 *	  Values of agents' secret headers, read by the dispatcher from
 *	  fleetlm.agent_secrets_file.
 *
 * src/secrets.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_SECRETS_H
#define FLEETLM_SECRETS_H

extern void secrets_load(void);
extern const char *secrets_get(const char *name);

#endif							/* FLEETLM_SECRETS_H */

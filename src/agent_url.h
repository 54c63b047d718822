/*-------------------------------------------------------------------------
 *
 * agent_url.h
 *	  Agent URLs: parsing http(s) URLs and matching them against
 *	  fleetlm.agent_url_allowlist.
 *
 * src/agent_url.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_AGENT_URL_H
#define FLEETLM_AGENT_URL_H

#include "utils/guc.h"

/* Longest URL fleetlm calls (origin_url || webhook_path), in bytes */
#define AGENT_URL_MAXLEN	2048

/* A parsed absolute http or https URL */
typedef struct AgentUrl
{
	bool		https;			/* scheme https, else http */
	char	   *host;			/* lower case; IPv6 literals in brackets */
	int			port;			/* explicit, or 80 / 443 */
	char	   *path;			/* starts with '/'; "/" when the URL has none */
	bool		has_query;		/* a '?' follows the path */
	bool		has_fragment;	/* a '#' follows the path (or the query) */
} AgentUrl;

extern bool agent_url_parse(const char *url, AgentUrl *out, char **error);
extern bool agent_url_allowed(const AgentUrl *url, const char *allowlist);
extern bool agent_url_allowlist_check_hook(char **newval, void **extra,
										   GucSource source);

#endif							/* FLEETLM_AGENT_URL_H */

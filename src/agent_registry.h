/*-------------------------------------------------------------------------
 *
 * agent_registry.h
 *	  The agent registry: fleetlm.register_agent, fleetlm.set_agent_status
 *	  and the checks an agent's configuration must pass.
 *
 * src/agent_registry.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_AGENT_REGISTRY_H
#define FLEETLM_AGENT_REGISTRY_H

#include "utils/jsonb.h"

#include "agent_url.h"

/*
 * Bounds of an agent's settings; the CHECK constraints of fleetlm.agents
 * in sql/fleetlm--1.0.sql repeat them.
 */
#define AGENT_HISTORY_LIMIT_MIN		1
#define AGENT_HISTORY_LIMIT_MAX		10000
#define AGENT_TIMEOUT_MS_MIN		100
#define AGENT_TIMEOUT_MS_MAX		600000
#define AGENT_DEBOUNCE_MS_MIN		0
#define AGENT_DEBOUNCE_MS_MAX		60000
#define AGENT_CONCURRENCY_MIN		1
#define AGENT_CONCURRENCY_MAX		1000
#define AGENT_ATTEMPTS_MIN			1
#define AGENT_ATTEMPTS_MAX			100

/* Longest name and model, in bytes */
#define AGENT_TEXT_MAXLEN			256

/* Most headers (headers and secret_headers together) */
#define AGENT_MAX_HEADERS			64

/* Longest header value, in bytes */
#define AGENT_HEADER_VALUE_MAXLEN	8192

extern void agent_check_url(const char *origin_url, const char *webhook_path,
							AgentUrl *out);
extern void agent_check_headers(Jsonb *headers, Jsonb *secret_headers);
extern bool agent_header_name_valid(const char *name);
extern bool agent_header_reserved(const char *name);
extern bool agent_secret_name_valid(const char *name);

#endif							/* FLEETLM_AGENT_REGISTRY_H */

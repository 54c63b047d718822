/*-------------------------------------------------------------------------
 *
 * agent_url.c
 *	  Agent URLs: parsing http(s) URLs and matching them against
 *	  fleetlm.agent_url_allowlist.
 *
 * fleetlm calls an agent only at a URL that a superuser allowed: the GUC
 * fleetlm.agent_url_allowlist is a comma-separated list of URL prefixes,
 * and a URL is allowed iff, for one entry, scheme, host and port are equal
 * (the host compared case-insensitively, the port 80 or 443 when absent)
 * and the URL's path starts with the entry's path at a '/' boundary.
 * register_agent checks an agent's URL here, and the dispatcher is to
 * check it again before each call (and the address it connected to).
 *
 * The parser is strict rather than general, so that what it matched is
 * what an HTTP client will request: only http and https; no user name or
 * password; a host of letters, digits, '-', '.' and '_', or an IPv6
 * literal in brackets; no byte outside printable ASCII, no backslash;
 * no empty, "." or ".." path segment (also spelt with %2e), which a
 * server would resolve to a path the allowlist never saw.
 *
 * Nothing here raises an error about its input: problems are returned as
 * messages, so that the GUC check hook can use the same code.
 *
 * src/agent_url.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "agent_url.h"

static bool agent_url_dot_segment(const char *seg, size_t len);
static bool agent_url_next_entry(const char **pos, char **entry);
static bool agent_url_match(const AgentUrl *url, const AgentUrl *prefix);

/*
 * Is the path segment seg[0..len) "." or "..", perhaps percent-encoded?
 */
static bool
agent_url_dot_segment(const char *seg, size_t len)
{
	int			dots = 0;
	size_t		i = 0;

	while (i < len)
	{
		if (seg[i] == '.')
			i++;
		else if (i + 3 <= len && seg[i] == '%' &&
				 seg[i + 1] == '2' && (seg[i + 2] == 'e' || seg[i + 2] == 'E'))
			i += 3;
		else
			return false;
		dots++;
	}
	return dots == 1 || dots == 2;
}

/*
 * Parse an absolute http or https URL into *out.  Returns false, with a
 * message (a clause: "the scheme must be ...") in *error, if it is not
 * one fleetlm would call.  Allocates in the current memory context.
 */
bool
agent_url_parse(const char *url, AgentUrl *out, char **error)
{
	size_t		len = strlen(url);
	const char *p;
	const char *auth;
	const char *auth_end;
	const char *host_end;
	const char *path;
	const char *path_end;
	const char *seg;

	memset(out, 0, sizeof(*out));
	*error = NULL;

	if (len > AGENT_URL_MAXLEN)
	{
		*error = psprintf("it is longer than %d bytes", AGENT_URL_MAXLEN);
		return false;
	}
	for (p = url; *p; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (c <= 0x20 || c >= 0x7f)
		{
			*error = pstrdup("it contains a space, a control character or a non-ASCII byte");
			return false;
		}
		if (c == '\\')
		{
			*error = pstrdup("it contains a backslash");
			return false;
		}
	}

	if (pg_strncasecmp(url, "http://", 7) == 0)
		auth = url + 7;
	else if (pg_strncasecmp(url, "https://", 8) == 0)
	{
		out->https = true;
		auth = url + 8;
	}
	else
	{
		*error = pstrdup("the scheme must be http:// or https://");
		return false;
	}

	/* the authority: host and port */
	auth_end = auth + strcspn(auth, "/?#");
	if (memchr(auth, '@', auth_end - auth) != NULL)
	{
		*error = pstrdup("it must not contain a user name or password");
		return false;
	}
	if (*auth == '[')
	{
		host_end = memchr(auth, ']', auth_end - auth);
		if (host_end == NULL)
		{
			*error = pstrdup("its IPv6 address has no closing bracket");
			return false;
		}
		if (host_end == auth + 1)
		{
			*error = pstrdup("it has no host");
			return false;
		}
		for (p = auth + 1; p < host_end; p++)
			if (!isxdigit((unsigned char) *p) && *p != ':' && *p != '.')
			{
				*error = pstrdup("its IPv6 address has a character other than hex digits, ':' and '.'");
				return false;
			}
		host_end++;
	}
	else
	{
		host_end = memchr(auth, ':', auth_end - auth);
		if (host_end == NULL)
			host_end = auth_end;
		for (p = auth; p < host_end; p++)
			if (!isalnum((unsigned char) *p) && *p != '-' && *p != '.' && *p != '_')
			{
				*error = pstrdup("its host has a character other than letters, digits, '-', '.' and '_'");
				return false;
			}
	}
	if (host_end == auth)
	{
		*error = pstrdup("it has no host");
		return false;
	}
	out->host = pnstrdup(auth, host_end - auth);
	for (char *h = out->host; *h; h++)
		*h = pg_ascii_tolower((unsigned char) *h);

	out->port = out->https ? 443 : 80;
	if (host_end < auth_end)
	{
		int			port = 0;

		if (*host_end != ':' || host_end + 1 == auth_end ||
			auth_end - (host_end + 1) > 5)
		{
			*error = pstrdup("its port must be a number between 1 and 65535");
			return false;
		}
		for (p = host_end + 1; p < auth_end; p++)
		{
			if (!isdigit((unsigned char) *p))
			{
				*error = pstrdup("its port must be a number between 1 and 65535");
				return false;
			}
			port = port * 10 + (*p - '0');
		}
		if (port < 1 || port > 65535)
		{
			*error = pstrdup("its port must be a number between 1 and 65535");
			return false;
		}
		out->port = port;
	}

	/* the path: no empty, "." or ".." segment */
	path = auth_end;
	path_end = path + strcspn(path, "?#");
	out->path = path == path_end ? pstrdup("/") : pnstrdup(path, path_end - path);
	out->has_query = *path_end == '?';
	out->has_fragment = strchr(path_end, '#') != NULL;
	seg = out->path + 1;
	for (;;)
	{
		size_t		n = strcspn(seg, "/");

		if (seg[n] == '/' && n == 0)
		{
			*error = pstrdup("its path has an empty segment (\"//\")");
			return false;
		}
		if (agent_url_dot_segment(seg, n))
		{
			*error = pstrdup("its path has a \".\" or \"..\" segment");
			return false;
		}
		if (seg[n] == '\0')
			break;
		seg += n + 1;
	}
	return true;
}

/*
 * The next entry of an allowlist, trimmed, in *entry (NULL when it is
 * blank); advances *pos past it.  Returns false at the end of the list.
 */
static bool
agent_url_next_entry(const char **pos, char **entry)
{
	const char *start = *pos;
	const char *end;

	if (start == NULL)
		return false;
	end = start + strcspn(start, ",");
	*pos = *end == ',' ? end + 1 : NULL;
	while (start < end && isspace((unsigned char) *start))
		start++;
	while (end > start && isspace((unsigned char) end[-1]))
		end--;
	*entry = end > start ? pnstrdup(start, end - start) : NULL;
	return true;
}

/*
 * Does the URL fall under the allowlist entry `prefix`?
 */
static bool
agent_url_match(const AgentUrl *url, const AgentUrl *prefix)
{
	size_t		n = strlen(prefix->path);

	if (url->https != prefix->https || url->port != prefix->port ||
		strcmp(url->host, prefix->host) != 0)
		return false;
	if (strncmp(url->path, prefix->path, n) != 0)
		return false;
	return prefix->path[n - 1] == '/' || url->path[n] == '\0' ||
		url->path[n] == '/';
}

/*
 * Is the URL allowed by the allowlist (fleetlm.agent_url_allowlist's
 * syntax)?  An entry that does not parse allows nothing; the check hook
 * keeps such entries out of the GUC.
 */
bool
agent_url_allowed(const AgentUrl *url, const char *allowlist)
{
	const char *pos = allowlist;
	char	   *entry;

	while (agent_url_next_entry(&pos, &entry))
	{
		AgentUrl	prefix;
		char	   *error;

		if (entry == NULL)
			continue;
		if (agent_url_parse(entry, &prefix, &error) &&
			!prefix.has_query && !prefix.has_fragment &&
			agent_url_match(url, &prefix))
			return true;
	}
	return false;
}

/*
 * GUC check hook of fleetlm.agent_url_allowlist: every non-blank entry
 * must be an http or https URL prefix without query or fragment.
 */
bool
agent_url_allowlist_check_hook(char **newval, void **extra, GucSource source)
{
	const char *pos = *newval;
	char	   *entry;

	while (agent_url_next_entry(&pos, &entry))
	{
		AgentUrl	prefix;
		char	   *error;

		if (entry == NULL)
			continue;
		if (!agent_url_parse(entry, &prefix, &error))
		{
			GUC_check_errmsg("fleetlm.agent_url_allowlist entry \"%s\" is not a valid URL prefix: %s",
							 entry, error);
			GUC_check_errhint("Entries are comma-separated URL prefixes such as \"http://127.0.0.1:8081/\" or \"https://api.example.com/v1/\".");
			return false;
		}
		if (prefix.has_query || prefix.has_fragment)
		{
			GUC_check_errmsg("fleetlm.agent_url_allowlist entry \"%s\" is not a valid URL prefix: it must not have a query or a fragment",
							 entry);
			return false;
		}
	}
	return true;
}

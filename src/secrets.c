/*-------------------------------------------------------------------------
 *
 * secrets.c
 *	  Values of agents' secret headers.
 *
 * fleetlm.agents.secret_headers maps a header to the *name* of a secret;
 * the values live in a file only the server's operating system user can
 * read, fleetlm.agent_secrets_file (default fleetlm_secrets.conf in the
 * data directory), one `NAME = value` per line, `#` comments.  Only the
 * dispatcher reads it, at start and on every reload (SIGHUP), into its own
 * memory: values are never in shared memory, a table, a dump, a log line or
 * an error message.  A malformed line is reported by its number, never by
 * its content.  Backends never read the file, so no SQL role can learn a
 * value, whatever its grants (pg_read_server_files aside, which is a
 * superuser's business).
 *
 * src/secrets.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>

#include "storage/fd.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "agent_registry.h"
#include "fleetlm.h"
#include "secrets.h"

/* Longest line of the file, value included */
#define SECRETS_LINE_MAX	16384

typedef struct SecretEntry
{
	char		name[72];		/* hash key */
	char	   *value;
} SecretEntry;

static MemoryContext secrets_context = NULL;
static HTAB *secrets_table = NULL;

static void secrets_forget(MemoryContext cxt, HTAB *table);
static char *secrets_trim(char *s);

/*
 * Wipe the values of a table before its memory goes back to the allocator.
 */
static void
secrets_forget(MemoryContext cxt, HTAB *table)
{
	HASH_SEQ_STATUS status;
	SecretEntry *e;

	if (table == NULL)
		return;
	hash_seq_init(&status, table);
	while ((e = hash_seq_search(&status)) != NULL)
		explicit_bzero(e->value, strlen(e->value));
	MemoryContextDelete(cxt);
}

static char *
secrets_trim(char *s)
{
	char	   *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' ||
					   end[-1] == '\n' || end[-1] == '\r'))
		*--end = '\0';
	return s;
}

/*
 * (Re)read the secrets file.  A missing file means no secrets; a file that
 * cannot be read keeps the secrets read before, with a WARNING.  Lines that
 * are not `NAME = value` with a valid name are skipped with a WARNING that
 * names the line number only.
 */
void
secrets_load(void)
{
	const char *path = fleetlm_agent_secrets_file;
	MemoryContext cxt;
	HTAB	   *table;
	HASHCTL		ctl;
	FILE	   *f;
	char	   *line;
	int			lineno = 0;
	int			count = 0;
	struct stat st;

	if (path == NULL || path[0] == '\0')
	{
		secrets_forget(secrets_context, secrets_table);
		secrets_context = NULL;
		secrets_table = NULL;
		return;
	}

	f = AllocateFile(path, "r");
	if (f == NULL)
	{
		if (errno == ENOENT)
		{
			secrets_forget(secrets_context, secrets_table);
			secrets_context = NULL;
			secrets_table = NULL;
			return;
		}
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("fleetlm dispatcher could not open secrets file \"%s\": %m", path),
				 errdetail("The secrets read before are kept.")));
		return;
	}
	if (fstat(fileno(f), &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
		ereport(WARNING,
				(errmsg("fleetlm secrets file \"%s\" is accessible to other users of the system", path),
				 errhint("Make it readable by the server's user only (chmod 0600).")));

	cxt = AllocSetContextCreate(TopMemoryContext, "fleetlm secrets",
								ALLOCSET_SMALL_SIZES);
	ctl.keysize = sizeof(((SecretEntry *) NULL)->name);
	ctl.entrysize = sizeof(SecretEntry);
	ctl.hcxt = cxt;
	table = hash_create("fleetlm secrets", 16, &ctl,
						HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	line = MemoryContextAlloc(cxt, SECRETS_LINE_MAX);
	while (fgets(line, SECRETS_LINE_MAX, f) != NULL)
	{
		char	   *s;
		char	   *eq;
		char	   *name;
		char	   *value;
		size_t		vlen;
		SecretEntry *e;

		lineno++;
		if (strchr(line, '\n') == NULL && !feof(f))
		{
			int			c;

			/* skip the rest of an over-long line */
			while ((c = fgetc(f)) != EOF && c != '\n')
				;
			ereport(WARNING,
					(errmsg("fleetlm secrets file \"%s\", line %d: longer than %d bytes; skipped",
							path, lineno, SECRETS_LINE_MAX - 2)));
			continue;
		}
		s = secrets_trim(line);
		if (*s == '\0' || *s == '#')
			continue;
		eq = strchr(s, '=');
		if (eq == NULL)
		{
			ereport(WARNING,
					(errmsg("fleetlm secrets file \"%s\", line %d: not NAME = value; skipped",
							path, lineno)));
			continue;
		}
		*eq = '\0';
		name = secrets_trim(s);
		value = secrets_trim(eq + 1);
		vlen = strlen(value);
		if (vlen >= 2 && value[0] == '"' && value[vlen - 1] == '"')
		{
			value[vlen - 1] = '\0';
			value++;
		}
		if (!agent_secret_name_valid(name))
		{
			ereport(WARNING,
					(errmsg("fleetlm secrets file \"%s\", line %d: not a valid secret name; skipped",
							path, lineno)));
			continue;
		}
		e = hash_search(table, name, HASH_ENTER, NULL);
		e->value = MemoryContextStrdup(cxt, value);
		count++;
	}
	explicit_bzero(line, SECRETS_LINE_MAX);
	if (ferror(f))
	{
		int			save_errno = errno;

		FreeFile(f);
		secrets_forget(cxt, table);
		errno = save_errno;
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("fleetlm dispatcher could not read secrets file \"%s\": %m", path),
				 errdetail("The secrets read before are kept.")));
		return;
	}
	FreeFile(f);

	secrets_forget(secrets_context, secrets_table);
	secrets_context = cxt;
	secrets_table = table;
	elog(DEBUG1, "fleetlm dispatcher read %d secrets from \"%s\"", count, path);
}

/*
 * The value of a secret, or NULL if it is not defined.  Valid until the
 * next secrets_load.
 */
const char *
secrets_get(const char *name)
{
	SecretEntry *e;

	if (secrets_table == NULL || strlen(name) >= sizeof(e->name))
		return NULL;
	e = hash_search(secrets_table, name, HASH_FIND, NULL);
	return e ? e->value : NULL;
}

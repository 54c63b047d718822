/*-------------------------------------------------------------------------
 *
 * pipeline_client.c
 *	  Test client: runs SQL statements through libpq's pipeline mode and
 *	  prints each result the moment it arrives.
 *
 * Usage: pipeline_client CONNINFO FILE DEPTH
 *
 * Reads one statement per line from FILE and sends them DEPTH at a time in
 * one pipeline (then a Sync).  Every statement must return one row of one
 * column; its value is printed on a line of its own and stdout is flushed
 * at once, so a line in the output means the client has received that
 * result.  Exits 1 at the first error (a lost connection included).
 *
 * test/pipeline_client.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libpq-fe.h"

int
main(int argc, char **argv)
{
	PGconn	   *conn;
	FILE	   *in;
	char		line[65536];
	int			depth;
	int			eof = 0;

	if (argc != 4)
	{
		fprintf(stderr, "usage: %s CONNINFO FILE DEPTH\n", argv[0]);
		return 2;
	}
	depth = atoi(argv[3]);
	conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "connection failed: %s", PQerrorMessage(conn));
		return 1;
	}
	in = fopen(argv[2], "r");
	if (in == NULL)
	{
		perror(argv[2]);
		return 2;
	}
	if (!PQenterPipelineMode(conn))
	{
		fprintf(stderr, "cannot enter pipeline mode: %s", PQerrorMessage(conn));
		return 1;
	}

	while (!eof)
	{
		int			sent = 0;

		while (sent < depth)
		{
			if (fgets(line, sizeof(line), in) == NULL)
			{
				eof = 1;
				break;
			}
			line[strcspn(line, "\n")] = '\0';
			if (line[0] == '\0')
				continue;
			if (!PQsendQueryParams(conn, line, 0, NULL, NULL, NULL, NULL, 0))
			{
				fprintf(stderr, "send failed: %s", PQerrorMessage(conn));
				return 1;
			}
			sent++;
		}
		if (sent == 0)
			break;
		if (!PQpipelineSync(conn))
		{
			fprintf(stderr, "sync failed: %s", PQerrorMessage(conn));
			return 1;
		}
		for (int i = 0; i < sent; i++)
		{
			PGresult   *res = PQgetResult(conn);

			if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK ||
				PQntuples(res) != 1)
			{
				fprintf(stderr, "statement failed: %s",
						res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
				return 1;
			}
			printf("%s\n", PQgetvalue(res, 0, 0));
			fflush(stdout);
			PQclear(res);
			res = PQgetResult(conn);	/* the NULL that ends each query */
			if (res != NULL)
			{
				fprintf(stderr, "unexpected extra result\n");
				return 1;
			}
		}
		{
			PGresult   *res = PQgetResult(conn);

			if (res == NULL || PQresultStatus(res) != PGRES_PIPELINE_SYNC)
			{
				fprintf(stderr, "expected the end of a pipeline: %s", PQerrorMessage(conn));
				return 1;
			}
			PQclear(res);
		}
	}
	PQfinish(conn);
	return 0;
}

/*-------------------------------------------------------------------------
 *
 * pipeline_client.c
 *	  Test client: runs SQL statements through libpq's pipeline mode and
 *	  prints each result the moment it arrives.
 *
 * Usage: pipeline_client CONNINFO FILE DEPTH [report]
 *
 * Reads one statement per line from FILE and sends them DEPTH at a time in
 * one pipeline (then a Sync).  Every statement must return one row of one
 * column; its value is printed on a line of its own and stdout is flushed
 * at once, so a line in the output means the client has received that
 * result.  Exits 1 at the first error (a lost connection included).
 *
 * With "report", any statement may be sent and every result is printed as
 * it arrives, and the client goes on after errors: "ROW <value>",
 * "CMD <command tag>", "ERROR <sqlstate> <message>", "ABORTED" (skipped
 * after an error in the pipeline), "SYNC", and "NOTICE <severity>
 * <message>" for notices and warnings.  A lost connection prints "LOST
 * <message>" and exits 1.
 *
 * test/pipeline_client.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libpq-fe.h"

static void
print_notice(void *arg, const PGresult *res)
{
	const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

	printf("NOTICE %s %s\n", sev ? sev : "?", msg ? msg : "?");
	fflush(stdout);
}

/*
 * Report mode: print every result of one pipeline of `sent` statements
 * and its Sync.  Returns 0, or 1 if the connection was lost.
 */
static int
report_pipeline(PGconn *conn, int sent)
{
	int			done = 0;

	while (done <= sent)
	{
		PGresult   *res = PQgetResult(conn);

		if (res == NULL)
		{
			if (PQstatus(conn) == CONNECTION_BAD)
			{
				printf("LOST %s", PQerrorMessage(conn));
				fflush(stdout);
				return 1;
			}
			continue;			/* the NULL that ends each query */
		}
		switch (PQresultStatus(res))
		{
			case PGRES_TUPLES_OK:
				printf("ROW %s\n", PQntuples(res) > 0 ? PQgetvalue(res, 0, 0) : "");
				done++;
				break;
			case PGRES_COMMAND_OK:
				printf("CMD %s\n", PQcmdStatus(res));
				done++;
				break;
			case PGRES_PIPELINE_ABORTED:
				printf("ABORTED\n");
				done++;
				break;
			case PGRES_PIPELINE_SYNC:
				printf("SYNC\n");
				done++;
				break;
			case PGRES_FATAL_ERROR:
				{
					const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
					const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

					printf("ERROR %s %s\n", state ? state : "?", msg ? msg : PQerrorMessage(conn));
					done++;
					if (PQstatus(conn) == CONNECTION_BAD)
					{
						fflush(stdout);
						PQclear(res);
						return 1;
					}
				}
				break;
			default:
				printf("OTHER %s\n", PQresStatus(PQresultStatus(res)));
				done++;
				break;
		}
		fflush(stdout);
		PQclear(res);
	}
	return 0;
}

int
main(int argc, char **argv)
{
	PGconn	   *conn;
	FILE	   *in;
	char		line[65536];
	int			depth;
	int			eof = 0;
	int			report = 0;

	if (argc != 4 && !(argc == 5 && strcmp(argv[4], "report") == 0))
	{
		fprintf(stderr, "usage: %s CONNINFO FILE DEPTH [report]\n", argv[0]);
		return 2;
	}
	report = (argc == 5);
	depth = atoi(argv[3]);
	conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "connection failed: %s", PQerrorMessage(conn));
		return 1;
	}
	if (report)
		PQsetNoticeReceiver(conn, print_notice, NULL);
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
		if (report)
		{
			if (report_pipeline(conn, sent) != 0)
				return 1;
			continue;
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

/*-------------------------------------------------------------------------
 *
 * slow_pipeline_client.c
 *	  Test client: a libpq pipeline that produces its appends more slowly
 *	  than the server runs them, as an application does that sends each
 *	  query when it has computed it.
 *
 * Usage: slow_pipeline_client CONNINFO SESSION USER COUNT DELAY_MS [hold]
 *
 * In pipeline mode, sends COUNT statements
 *		SELECT fleetlm.append(SESSION, USER, 'text', '{"i": <i>}')
 * one at a time, each pushed to the socket at once (PQflush) and followed
 * by a pause of DELAY_MS milliseconds, then one Sync.  The server has then
 * received each append long before the next, with nothing more in its
 * input buffer.  Lines on stdout, each flushed at once:
 *		SENT <i>			statement i is on the wire
 *		EARLY				something arrived before the Sync was sent
 *		SYNC SENT			the Sync is on the wire
 *		ROW <i> <seq>		the result of statement i has arrived
 *		SYNC				the pipeline's end has arrived
 * With "hold", it reads a line from stdin before it sends the Sync, so
 * that a test can look at the server in between.  Exits 1 with a message
 * on stderr at the first error.
 *
 * test/slow_pipeline_client.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "libpq-fe.h"

static void
fail(PGconn *conn, const char *what)
{
	fprintf(stderr, "slow_pipeline_client: %s: %s", what, PQerrorMessage(conn));
	PQfinish(conn);
	exit(1);
}

static void
pause_ms(int ms)
{
	struct timespec ts;

	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (long) (ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) != 0)
		;
}

/*
 * Has any result arrived yet?  Reads what the socket holds without
 * blocking.
 */
static int
result_arrived(PGconn *conn)
{
	if (!PQconsumeInput(conn))
		fail(conn, "PQconsumeInput");
	return !PQisBusy(conn);
}

int
main(int argc, char **argv)
{
	PGconn	   *conn;
	int			count;
	int			delay;
	int			hold;
	int			early = 0;

	if (argc < 6 || argc > 7 || (argc == 7 && strcmp(argv[6], "hold") != 0))
	{
		fprintf(stderr, "usage: %s CONNINFO SESSION USER COUNT DELAY_MS [hold]\n", argv[0]);
		return 2;
	}
	count = atoi(argv[4]);
	delay = atoi(argv[5]);
	hold = (argc == 7);

	conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK)
		fail(conn, "connect");
	if (!PQenterPipelineMode(conn))
		fail(conn, "PQenterPipelineMode");

	for (int i = 1; i <= count; i++)
	{
		char		content[64];
		const char *params[3];

		snprintf(content, sizeof(content), "{\"i\": %d}", i);
		params[0] = argv[2];
		params[1] = argv[3];
		params[2] = content;
		if (!PQsendQueryParams(conn,
							   "SELECT fleetlm.append($1, $2, 'text', $3::jsonb)",
							   3, NULL, params, NULL, NULL, 0))
			fail(conn, "PQsendQueryParams");
		if (PQflush(conn) != 0)
			fail(conn, "PQflush");
		printf("SENT %d\n", i);
		fflush(stdout);
		pause_ms(delay);
		if (!early && result_arrived(conn))
			early = 1;
	}
	if (hold)
	{
		char		line[64];

		if (fgets(line, sizeof(line), stdin) == NULL)
		{
			fprintf(stderr, "slow_pipeline_client: stdin closed before the Sync\n");
			PQfinish(conn);
			return 1;
		}
		if (!early && result_arrived(conn))
			early = 1;
	}
	if (early)
	{
		printf("EARLY\n");
		fflush(stdout);
	}
	if (!PQpipelineSync(conn))
		fail(conn, "PQpipelineSync");
	printf("SYNC SENT\n");
	fflush(stdout);

	for (int i = 1; i <= count; i++)
	{
		PGresult   *res = PQgetResult(conn);

		if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK ||
			PQntuples(res) != 1)
		{
			fprintf(stderr, "slow_pipeline_client: statement %d: %s", i,
					res ? PQresultErrorMessage(res) : PQerrorMessage(conn));
			PQfinish(conn);
			return 1;
		}
		printf("ROW %d %s\n", i, PQgetvalue(res, 0, 0));
		fflush(stdout);
		PQclear(res);
		/* the end of statement i's results */
		if ((res = PQgetResult(conn)) != NULL)
		{
			fprintf(stderr, "slow_pipeline_client: statement %d: more than one result\n", i);
			PQfinish(conn);
			return 1;
		}
	}
	{
		PGresult   *res = PQgetResult(conn);

		if (res == NULL || PQresultStatus(res) != PGRES_PIPELINE_SYNC)
			fail(conn, "no Sync at the end of the pipeline");
		PQclear(res);
	}
	printf("SYNC\n");
	fflush(stdout);
	PQfinish(conn);
	return 0;
}

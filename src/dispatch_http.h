/*-------------------------------------------------------------------------
 *
 * dispatch_http.h
 *	  The dispatcher's HTTP transfers: libcurl's multi interface driven
 *	  from the worker's wait loop.
 *
 * src/dispatch_http.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLEETLM_DISPATCH_HTTP_H
#define FLEETLM_DISPATCH_HTTP_H

#include "utils/timestamp.h"

#include "agent_stream.h"
#include "fleetlm.h"

/* What an ended transfer amounted to (http_result) */
typedef enum HttpOutcome
{
	HTTP_OK,					/* 2xx and a complete reply (finish or abort) */
	HTTP_RETRY,					/* worth another attempt */
	HTTP_FAIL,					/* not worth another attempt */
	HTTP_CANCELLED				/* aborted by the dispatcher itself */
} HttpOutcome;

/* One call to start (http_start) */
typedef struct HttpRequest
{
	const char *url;
	const char *body;			/* JSON, NUL-terminated */
	struct curl_slist *headers; /* handed over to the transfer */
	AgentStreamProtocol protocol;
	bool		check_address;	/* host is a name: connect to public
								 * addresses only (DNS rebinding) */
	int			timeout_ms;		/* total */
	/* for the chunk store */
	const char *session_id;
	int64		turn;
	int			attempt;
	int			first_chunk;
} HttpRequest;

typedef struct HttpResult
{
	HttpOutcome outcome;
	int			status;			/* HTTP status, 0: none */
	int			retry_after_ms; /* Retry-After, -1: none */
	int			chunks;			/* chunks delivered */
	char		error[256];		/* what went wrong (no secrets: built from
								 * status codes, libcurl's and the parser's
								 * messages) */
	Jsonb	  **messages;		/* HTTP_OK: the compacted assistant
								 * message(s): a reply may hold several */
	int			nmessages;
	int64		usec;			/* duration of the call */
} HttpResult;

extern void http_init(void);
extern int	http_wait_fd(void);
extern int	http_start(const HttpRequest *req, char *error, size_t errlen);
extern void http_run(bool sockets_ready, TimestampTz now);
extern long http_timeout_ms(TimestampTz now);
extern int	http_next_done(void);
extern void http_result(int xfer, HttpResult *res, const char *fallback_id);
extern void http_release(int xfer, bool failed);
extern void http_cancel(int xfer);
extern int	http_running(void);
extern void http_shutdown(void);
extern struct curl_slist *http_header_append(struct curl_slist *list,
											 const char *name, const char *value,
											 bool *ok);

#endif							/* FLEETLM_DISPATCH_HTTP_H */

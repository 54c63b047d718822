/*-------------------------------------------------------------------------
 *
 * dispatch_http.c
 *	  The dispatcher's HTTP transfers, on libcurl's multi interface.
 *
 * libcurl runs inside the dispatcher's wait loop, never in a thread of its
 * own: its sockets live in an epoll set of ours (the socket callback adds,
 * changes and removes them), and that epoll descriptor sits in the
 * worker's WaitEventSet next to the latch and postmaster death, so one
 * wait serves shutdown, new durable records and network I/O alike; the
 * timer callback gives the wait its timeout.  Connections are kept alive
 * and reused by the multi handle.
 *
 * Rules of a libcurl transfer inside a PostgreSQL process, all kept here:
 *	- no palloc, no ereport in a callback: the write callback only feeds the
 *	  reply parser (agent_stream_feed, which copies and never allocates) and
 *	  asks libcurl to pause when the parser's buffer is full; parsing,
 *	  compaction and the chunk store run after each round, outside;
 *	- CURLOPT_NOSIGNAL, and every signal blocked around the calls that may
 *	  start the threaded resolver, so that no PostgreSQL signal handler ever
 *	  runs on one of its threads;
 *	- http and https only, no redirects, sizes capped (line and body, by
 *	  the parser), connect, idle and total timeouts;
 *	- for a URL whose host is a name, the address libcurl is about to
 *	  connect to must be public (not loopback, private, link-local,
 *	  shared, multicast or unspecified): the allowlist names hosts, and a
 *	  name that resolves somewhere else (DNS rebinding) is refused.
 *
 * src/dispatch_http.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "utils/memutils.h"

#include "dispatch_http.h"
#include "stream.h"

/* one transfer */
typedef struct HttpXfer
{
	bool		in_use;
	bool		done;			/* ended; waiting for http_result */
	bool		cancelled;
	CURL	   *easy;
	MemoryContext cxt;
	AgentStream *as;
	struct curl_slist *headers;
	char	   *body;
	int			slot;			/* chunk store slot, -1: none */
	int			first_chunk;
	bool		check_address;
	bool		address_refused;
	char		address[64];
	bool		fed;			/* bytes fed since the last process */
	bool		paused;
	bool		idle_abort;
	AgentStreamStatus feed_status;
	int			retry_after_ms;
	CURLcode	result;
	TimestampTz started;
	TimestampTz last_byte;
	char		errbuf[CURL_ERROR_SIZE];
} HttpXfer;

static CURLM *http_multi = NULL;
static int	http_epoll_fd = -1;
static HttpXfer *http_xfers = NULL;
static int	http_nxfers = 0;
static int	http_nrunning = 0;
static TimestampTz http_timer_at = 0;	/* 0: no libcurl timer */

/* Read size of one libcurl write; also the parser's feed reserve */
#define HTTP_BUFFER_SIZE	(64 * 1024)

static void http_block_signals(sigset_t *old);
static void http_restore_signals(sigset_t *old);
static int	http_socket_cb(CURL *easy, curl_socket_t s, int what, void *userp,
						   void *socketp);
static int	http_timer_cb(CURLM *multi, long timeout_ms, void *userp);
static size_t http_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata);
static size_t http_header_cb(char *buffer, size_t size, size_t nitems, void *userdata);
static curl_socket_t http_open_socket_cb(void *clientp, curlsocktype purpose,
										 struct curl_sockaddr *address);
static bool http_address_public(const struct sockaddr *sa);
static void http_chunk_cb(void *arg, int chunk_no, Jsonb *chunk);
static void http_collect(void);
static void http_process(void);

/*
 * libcurl may start a resolver thread in curl_multi_add_handle and
 * curl_multi_socket_action; the thread inherits our signal mask.
 */
static void
http_block_signals(sigset_t *old)
{
	sigset_t	all;

	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, old);
}

static void
http_restore_signals(sigset_t *old)
{
	sigprocmask(SIG_SETMASK, old, NULL);
}

/*
 * Set up libcurl, the multi handle and our epoll set.  Once per process.
 */
void
http_init(void)
{
	sigset_t	old;
	CURLcode	rc;

	http_block_signals(&old);
	rc = curl_global_init(CURL_GLOBAL_DEFAULT);
	http_restore_signals(&old);
	if (rc != CURLE_OK)
		elog(ERROR, "fleetlm dispatcher: curl_global_init failed: %s",
			 curl_easy_strerror(rc));
	http_multi = curl_multi_init();
	if (http_multi == NULL)
		elog(ERROR, "fleetlm dispatcher: curl_multi_init failed");
	curl_multi_setopt(http_multi, CURLMOPT_SOCKETFUNCTION, http_socket_cb);
	curl_multi_setopt(http_multi, CURLMOPT_TIMERFUNCTION, http_timer_cb);
	curl_multi_setopt(http_multi, CURLMOPT_MAXCONNECTS,
					  (long) Max(fleetlm_dispatch_max_inflight, 8));

	http_epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (http_epoll_fd < 0)
		ereport(ERROR,
				(errcode_for_socket_access(),
				 errmsg("fleetlm dispatcher: epoll_create1 failed: %m")));

	http_nxfers = fleetlm_dispatch_max_inflight;
	http_xfers = MemoryContextAllocZero(TopMemoryContext,
										sizeof(HttpXfer) * http_nxfers);
}

/*
 * The descriptor to wait on for network I/O: readable when a socket of a
 * transfer is ready.
 */
int
http_wait_fd(void)
{
	return http_epoll_fd;
}

int
http_running(void)
{
	return http_nrunning;
}

/*
 * Socket callback: mirror libcurl's interest in a socket into our epoll
 * set.  System calls only.
 */
static int
http_socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.data.fd = s;
	if (what == CURL_POLL_REMOVE)
	{
		epoll_ctl(http_epoll_fd, EPOLL_CTL_DEL, s, NULL);
		return 0;
	}
	if (what & CURL_POLL_IN)
		ev.events |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		ev.events |= EPOLLOUT;
	if (epoll_ctl(http_epoll_fd, EPOLL_CTL_MOD, s, &ev) != 0 && errno == ENOENT)
		epoll_ctl(http_epoll_fd, EPOLL_CTL_ADD, s, &ev);
	return 0;
}

/*
 * Timer callback: when libcurl wants to be called without socket activity.
 */
static int
http_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	if (timeout_ms < 0)
		http_timer_at = 0;
	else
		http_timer_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	return 0;
}

/*
 * Write callback: hand the bytes to the parser.  On FULL, pause: libcurl
 * offers the same bytes again after http_process made room.  A failed
 * parser ends the transfer (returning a short count).
 */
static size_t
http_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	HttpXfer   *x = (HttpXfer *) userdata;
	size_t		n = size * nmemb;
	AgentStreamStatus st;

	x->last_byte = GetCurrentTimestamp();
	st = agent_stream_feed(x->as, ptr, n);
	if (st == AGENT_STREAM_FULL)
	{
		x->paused = true;
		x->fed = true;
		return CURL_WRITEFUNC_PAUSE;
	}
	x->fed = true;
	if (AGENT_STREAM_FAILED(st))
	{
		x->feed_status = st;
		return 0;
	}
	return n;
}

/*
 * Header callback: note Retry-After (seconds or an HTTP date).
 */
static size_t
http_header_cb(char *buffer, size_t size, size_t nitems, void *userdata)
{
	HttpXfer   *x = (HttpXfer *) userdata;
	size_t		n = size * nitems;
	char		value[128];
	size_t		vlen;
	const char *p;

	x->last_byte = GetCurrentTimestamp();
	if (n > 12 && n < 12 + sizeof(value) && pg_strncasecmp(buffer, "retry-after:", 12) == 0)
	{
		p = buffer + 12;
		while (p < buffer + n && (*p == ' ' || *p == '\t'))
			p++;
		vlen = (buffer + n) - p;
		memcpy(value, p, vlen);
		value[vlen] = '\0';
		while (vlen > 0 && (value[vlen - 1] == '\r' || value[vlen - 1] == '\n' ||
							value[vlen - 1] == ' '))
			value[--vlen] = '\0';
		if (vlen > 0 && strspn(value, "0123456789") == vlen)
		{
			long		secs = strtol(value, NULL, 10);

			x->retry_after_ms = (int) Min(secs, 86400L) * 1000;
		}
		else if (vlen > 0)
		{
			time_t		when = curl_getdate(value, NULL);

			if (when > 0)
			{
				time_t		now = time(NULL);

				x->retry_after_ms = when > now ? (int) Min(when - now, 86400) * 1000 : 0;
			}
		}
	}
	return n;
}

/*
 * Is this an address a name may take us to?  Loopback, private (RFC 1918,
 * unique local), shared (RFC 6598), link-local, multicast, reserved and
 * unspecified addresses are not; IPv4-mapped addresses are judged as IPv4.
 */
static bool
http_address_public(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
	{
		uint32		a = ntohl(((const struct sockaddr_in *) sa)->sin_addr.s_addr);

		if ((a >> 24) == 0 || (a >> 24) == 10 || (a >> 24) == 127 ||
			(a >> 22) == ((100 << 2) | 1) ||	/* 100.64.0.0/10 */
			(a >> 16) == ((169 << 8) | 254) ||
			(a >> 20) == ((172 << 4) | 1) ||	/* 172.16.0.0/12 */
			(a >> 16) == ((192 << 8) | 168) ||
			(a >> 28) >= 14)	/* multicast, reserved, broadcast */
			return false;
		return true;
	}
	if (sa->sa_family == AF_INET6)
	{
		const uint8 *b = ((const struct sockaddr_in6 *) sa)->sin6_addr.s6_addr;
		static const uint8 mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		bool		zero = true;

		if (memcmp(b, mapped, 12) == 0)
		{
			struct sockaddr_in v4;

			memset(&v4, 0, sizeof(v4));
			v4.sin_family = AF_INET;
			memcpy(&v4.sin_addr.s_addr, b + 12, 4);
			return http_address_public((struct sockaddr *) &v4);
		}
		for (int i = 0; i < 15; i++)
			zero = zero && b[i] == 0;
		if (zero)				/* :: and ::1 */
			return false;
		if ((b[0] & 0xfe) == 0xfc ||	/* fc00::/7 */
			(b[0] == 0xfe && (b[1] & 0xc0) == 0x80) ||	/* fe80::/10 */
			b[0] == 0xff)		/* multicast */
			return false;
		return true;
	}
	return false;
}

/*
 * Open-socket callback: refuse an address a name must not lead to.
 */
static curl_socket_t
http_open_socket_cb(void *clientp, curlsocktype purpose,
					struct curl_sockaddr *address)
{
	HttpXfer   *x = (HttpXfer *) clientp;

	if (x->check_address && !http_address_public(&address->addr))
	{
		const void *src = address->family == AF_INET6 ?
			(const void *) &((struct sockaddr_in6 *) &address->addr)->sin6_addr :
			(const void *) &((struct sockaddr_in *) &address->addr)->sin_addr;

		if (inet_ntop(address->family, src, x->address, sizeof(x->address)) == NULL)
			strlcpy(x->address, "?", sizeof(x->address));
		x->address_refused = true;
		return CURL_SOCKET_BAD;
	}
	return socket(address->family, address->socktype, address->protocol);
}

/*
 * Parser callback: a chunk, into the chunk store (outside libcurl's
 * callbacks: http_process calls the parser).
 */
static void
http_chunk_cb(void *arg, int chunk_no, Jsonb *chunk)
{
	HttpXfer   *x = (HttpXfer *) arg;

	if (x->slot >= 0)
		stream_add(x->slot, x->first_chunk + chunk_no - 1, chunk);
}

/*
 * Add "Name: value" to a header list; false in *ok if libcurl failed (out
 * of memory).  Values may be secrets: nothing is logged here.
 */
struct curl_slist *
http_header_append(struct curl_slist *list, const char *name, const char *value,
				   bool *ok)
{
	size_t		len = strlen(name) + strlen(value) + 3;
	char	   *line = palloc(len);
	struct curl_slist *n;

	snprintf(line, len, "%s: %s", name, value);
	n = curl_slist_append(list, line);
	explicit_bzero(line, len);
	pfree(line);
	if (n == NULL)
	{
		*ok = false;
		return list;
	}
	return n;
}

/*
 * Start a call.  Returns the transfer's index, or -1 with the reason in
 * error (no free transfer, libcurl refused).  The header list belongs to
 * the transfer from now on, even on failure.
 */
int
http_start(const HttpRequest *req, char *error, size_t errlen)
{
	HttpXfer   *x = NULL;
	int			i;
	MemoryContext old;
	CURLMcode	mrc;
	sigset_t	sigs;
	int			max_line = fleetlm_dispatch_max_line_kb * 1024;
	int64		max_bytes = (int64) fleetlm_dispatch_max_response_kb * 1024;

	for (i = 0; i < http_nxfers; i++)
	{
		if (!http_xfers[i].in_use)
		{
			x = &http_xfers[i];
			break;
		}
	}
	if (x == NULL)
	{
		curl_slist_free_all(req->headers);
		strlcpy(error, "no free transfer", errlen);
		return -1;
	}
	memset(x, 0, sizeof(*x));
	x->cxt = AllocSetContextCreate(TopMemoryContext, "fleetlm transfer",
								   ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(x->cxt);
	x->body = pstrdup(req->body);
	x->as = agent_stream_create(req->protocol, max_line, max_bytes,
								HTTP_BUFFER_SIZE, http_chunk_cb, x);
	MemoryContextSwitchTo(old);
	x->headers = req->headers;
	x->check_address = req->check_address;
	x->retry_after_ms = -1;
	x->feed_status = AGENT_STREAM_OK;
	x->first_chunk = req->first_chunk;
	x->started = x->last_byte = GetCurrentTimestamp();
	x->slot = stream_open(req->session_id, req->turn, req->attempt, req->first_chunk);

	x->easy = curl_easy_init();
	if (x->easy == NULL)
	{
		strlcpy(error, "curl_easy_init failed", errlen);
		x->in_use = true;
		http_release(i, true);
		return -1;
	}
	curl_easy_setopt(x->easy, CURLOPT_URL, req->url);
	curl_easy_setopt(x->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(x->easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(x->easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(x->easy, CURLOPT_POST, 1L);
	curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, x->body);
	curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE, (long) strlen(x->body));
	curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->headers);
	curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, http_write_cb);
	curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(x->easy, CURLOPT_HEADERFUNCTION, http_header_cb);
	curl_easy_setopt(x->easy, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(x->easy, CURLOPT_OPENSOCKETFUNCTION, http_open_socket_cb);
	curl_easy_setopt(x->easy, CURLOPT_OPENSOCKETDATA, x);
	curl_easy_setopt(x->easy, CURLOPT_BUFFERSIZE, (long) HTTP_BUFFER_SIZE);
	curl_easy_setopt(x->easy, CURLOPT_CONNECTTIMEOUT_MS,
					 (long) fleetlm_dispatch_connect_timeout_ms);
	curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, (long) req->timeout_ms);
	curl_easy_setopt(x->easy, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
	curl_easy_setopt(x->easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(x->easy, CURLOPT_ACCEPT_ENCODING, NULL);
	curl_easy_setopt(x->easy, CURLOPT_USERAGENT, "fleetlm/1.0");

	x->in_use = true;
	http_block_signals(&sigs);
	mrc = curl_multi_add_handle(http_multi, x->easy);
	http_restore_signals(&sigs);
	if (mrc != CURLM_OK)
	{
		snprintf(error, errlen, "curl_multi_add_handle failed: %s",
				 curl_multi_strerror(mrc));
		curl_easy_cleanup(x->easy);
		x->easy = NULL;
		http_release(i, true);
		return -1;
	}
	http_nrunning++;
	return i;
}

/*
 * Parse what the write callbacks fed, outside any libcurl callback, and
 * resume paused transfers.
 */
static void
http_process(void)
{
	for (int i = 0; i < http_nxfers; i++)
	{
		HttpXfer   *x = &http_xfers[i];

		if (!x->in_use || !x->fed)
			continue;
		x->fed = false;
		agent_stream_process(x->as);
		if (x->paused && !x->done)
		{
			sigset_t	sigs;

			x->paused = false;
			http_block_signals(&sigs);
			curl_easy_pause(x->easy, CURLPAUSE_CONT);
			http_restore_signals(&sigs);
		}
	}
}

/*
 * Take the transfers libcurl reports ended off the multi handle.
 */
static void
http_collect(void)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(http_multi, &left)) != NULL)
	{
		HttpXfer   *x = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &x);
		if (x == NULL)
			continue;
		x->result = msg->data.result;
		x->done = true;
		curl_multi_remove_handle(http_multi, x->easy);
		http_nrunning--;
	}
}

/*
 * Drive libcurl: the ready sockets, an expired timer, then the idle
 * timeout of every transfer.
 */
void
http_run(bool sockets_ready, TimestampTz now)
{
	int			running;
	sigset_t	sigs;

	if (sockets_ready)
	{
		struct epoll_event evs[64];
		int			n;

		n = epoll_wait(http_epoll_fd, evs, lengthof(evs), 0);
		for (int i = 0; i < n; i++)
		{
			int			action = 0;

			if (evs[i].events & (EPOLLIN | EPOLLHUP))
				action |= CURL_CSELECT_IN;
			if (evs[i].events & EPOLLOUT)
				action |= CURL_CSELECT_OUT;
			if (evs[i].events & EPOLLERR)
				action |= CURL_CSELECT_ERR;
			http_block_signals(&sigs);
			curl_multi_socket_action(http_multi, evs[i].data.fd, action, &running);
			http_restore_signals(&sigs);
			http_process();
		}
	}
	if (http_timer_at != 0 && now >= http_timer_at)
	{
		http_timer_at = 0;
		http_block_signals(&sigs);
		curl_multi_socket_action(http_multi, CURL_SOCKET_TIMEOUT, 0, &running);
		http_restore_signals(&sigs);
	}
	http_process();

	/* idle timeout: no byte for too long */
	for (int i = 0; i < http_nxfers; i++)
	{
		HttpXfer   *x = &http_xfers[i];

		if (x->in_use && !x->done &&
			TimestampDifferenceExceeds(x->last_byte, now,
									   fleetlm_dispatch_idle_timeout_ms))
		{
			x->idle_abort = true;
			x->done = true;
			x->result = CURLE_OPERATION_TIMEDOUT;
			curl_multi_remove_handle(http_multi, x->easy);
			http_nrunning--;
		}
	}
	http_collect();
}

/*
 * Milliseconds until the dispatcher must call http_run without I/O: the
 * libcurl timer or the nearest idle timeout; -1: none.
 */
long
http_timeout_ms(TimestampTz now)
{
	TimestampTz at = http_timer_at;

	for (int i = 0; i < http_nxfers; i++)
	{
		HttpXfer   *x = &http_xfers[i];
		TimestampTz idle;

		if (!x->in_use || x->done)
			continue;
		idle = TimestampTzPlusMilliseconds(x->last_byte, fleetlm_dispatch_idle_timeout_ms);
		if (at == 0 || idle < at)
			at = idle;
	}
	if (at == 0)
		return -1;
	if (at <= now)
		return 0;
	return (long) ((at - now + 999) / 1000);
}

/*
 * The next ended transfer, or -1.
 */
int
http_next_done(void)
{
	for (int i = 0; i < http_nxfers; i++)
	{
		if (http_xfers[i].in_use && http_xfers[i].done)
			return i;
	}
	return -1;
}

/*
 * What an ended transfer amounted to.  The message, if any, is built in
 * the caller's memory context.
 */
void
http_result(int xfer, HttpResult *res, const char *fallback_id)
{
	HttpXfer   *x = &http_xfers[xfer];
	AgentStreamResult ar;
	long		status = 0;

	memset(res, 0, sizeof(*res));
	res->retry_after_ms = x->retry_after_ms;
	res->usec = GetCurrentTimestamp() - x->started;
	if (x->easy)
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
	res->status = (int) status;

	agent_stream_process(x->as);
	if (!x->idle_abort && !x->cancelled && x->result == CURLE_OK)
		agent_stream_finish(x->as);
	agent_stream_result(x->as, &ar);
	res->chunks = ar.chunks;

	if (x->cancelled)
	{
		res->outcome = HTTP_CANCELLED;
		strlcpy(res->error, "cancelled", sizeof(res->error));
	}
	else if (x->address_refused)
	{
		res->outcome = HTTP_FAIL;
		snprintf(res->error, sizeof(res->error),
				 "the agent's host name resolved to %s, which is not a public address",
				 x->address);
	}
	else if (x->idle_abort)
	{
		res->outcome = HTTP_RETRY;
		snprintf(res->error, sizeof(res->error),
				 "no data from the agent for %d ms (fleetlm.dispatch_idle_timeout)",
				 fleetlm_dispatch_idle_timeout_ms);
	}
	else if (AGENT_STREAM_FAILED(ar.status) && status >= 200 && status < 300)
	{
		res->outcome = HTTP_FAIL;
		snprintf(res->error, sizeof(res->error), "malformed reply: %s",
				 ar.error ? ar.error : "?");
	}
	else if (x->result != CURLE_OK && status == 0)
	{
		res->outcome = HTTP_RETRY;
		snprintf(res->error, sizeof(res->error), "%s",
				 x->errbuf[0] ? x->errbuf : curl_easy_strerror(x->result));
	}
	else if (status == 408 || status == 425 || status == 429 || status >= 500)
	{
		res->outcome = HTTP_RETRY;
		snprintf(res->error, sizeof(res->error), "the agent answered HTTP %ld", status);
	}
	else if (status < 200 || status >= 300)
	{
		res->outcome = HTTP_FAIL;
		snprintf(res->error, sizeof(res->error), "the agent answered HTTP %ld", status);
	}
	else if (x->result != CURLE_OK)
	{
		res->outcome = HTTP_RETRY;
		snprintf(res->error, sizeof(res->error), "%s",
				 x->errbuf[0] ? x->errbuf : curl_easy_strerror(x->result));
	}
	else if (!ar.complete && ar.agent_error != NULL)
	{
		/* the agent said it failed: its answer, not worth repeating */
		res->outcome = HTTP_FAIL;
		snprintf(res->error, sizeof(res->error), "the agent reported an error: %s",
				 ar.agent_error);
	}
	else if (!ar.complete)
	{
		res->outcome = HTTP_RETRY;
		strlcpy(res->error, "the reply ended without finish or abort",
				sizeof(res->error));
	}
	else
	{
		res->outcome = HTTP_OK;
		res->messages = agent_stream_messages(x->as, fallback_id, &res->nmessages);
	}
}

/*
 * Cancel a running transfer (its session was deleted, or we shut down); it
 * is reported done, HTTP_CANCELLED.
 */
void
http_cancel(int xfer)
{
	HttpXfer   *x = &http_xfers[xfer];

	if (!x->in_use || x->done)
		return;
	x->cancelled = true;
	x->done = true;
	curl_multi_remove_handle(http_multi, x->easy);
	http_nrunning--;
}

/*
 * Free an ended transfer; its slot in the chunk store is closed, as failed
 * (a retry or an agent_error follows) or not.
 */
void
http_release(int xfer, bool failed)
{
	HttpXfer   *x = &http_xfers[xfer];

	if (!x->in_use)
		return;
	if (x->slot >= 0)
		stream_close(x->slot, failed);
	x->slot = -1;
	if (x->easy)
		curl_easy_cleanup(x->easy);
	if (x->headers)
		curl_slist_free_all(x->headers);
	if (x->as)
		agent_stream_destroy(x->as);
	if (x->cxt)
		MemoryContextDelete(x->cxt);
	x->easy = NULL;
	x->headers = NULL;
	x->as = NULL;
	x->cxt = NULL;
	x->in_use = false;
	x->done = false;
}

/*
 * Abandon every transfer and libcurl itself (on exit: the calls run again
 * after the restart).
 */
void
http_shutdown(void)
{
	if (http_multi == NULL)
		return;
	for (int i = 0; i < http_nxfers; i++)
	{
		if (http_xfers[i].in_use && !http_xfers[i].done)
			http_cancel(i);
		if (http_xfers[i].in_use && http_xfers[i].easy)
		{
			curl_easy_cleanup(http_xfers[i].easy);
			http_xfers[i].easy = NULL;
		}
	}
	curl_multi_cleanup(http_multi);
	http_multi = NULL;
}

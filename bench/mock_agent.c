/*-------------------------------------------------------------------------
 *
 * mock_agent.c
 *	  The benchmark's instant agent: an HTTP/1.1 server that answers every
 *	  webhook POST at once with a fixed, complete JSONL reply, and a closed
 *	  loop load generator to measure it alone.
 *
 * Build:
 *	  cc -O2 -Wall -Wextra -o bench/mock_agent bench/mock_agent.c
 *	  (add -pthread if your libc wants it; glibc 2.34 and later do not)
 *
 * Server:
 *	  bench/mock_agent [-p PORT] [-f PORTFILE] [-t THREADS]
 *
 *	  Listens on 127.0.0.1:PORT (default 0: a free port), prints "port <n>"
 *	  on stdout and flushes it once listening, and writes "<n>\n" to
 *	  PORTFILE (via PORTFILE.tmp and a rename) if -f is given.  With -t N
 *	  (default 1), N threads, each with its own SO_REUSEPORT listener and
 *	  epoll loop.  Runs until SIGTERM or SIGINT, then exits 0.
 *
 *	  Every POST gets, as soon as its body is in:
 *
 *		HTTP/1.1 200 OK
 *		Content-Type: application/x-ndjson
 *		Content-Length: 139
 *
 *		{"type":"start"}
 *		{"type":"text-start","id":"t"}
 *		{"type":"text-delta","id":"t","delta":"ok"}
 *		{"type":"text-end","id":"t"}
 *		{"type":"finish"}
 *
 *	  Request bodies by Content-Length or "Transfer-Encoding: chunked";
 *	  keep-alive, pipelined requests and partial reads are handled (the
 *	  answers to a batch of pipelined requests go out in one write);
 *	  "Expect: 100-continue" is answered; "Connection: close", or HTTP/1.0
 *	  without keep-alive, closes after the answer.  Another method gets
 *	  405, a malformed request 400 and a closed connection, a request over
 *	  64 MB 413.  Nothing is logged.
 *
 * Load generator:
 *	  bench/mock_agent --load HOST:PORT [-c CONNS] [-d SECONDS] [-t THREADS]
 *
 *	  Opens CONNS (default 32) keep-alive connections (spread over THREADS
 *	  threads, default 1) and on each sends a 600-byte POST like the
 *	  dispatcher's (protocol fleetlm), waits for the whole answer, and sends
 *	  the next: a closed loop, as the dispatcher is.  After SECONDS
 *	  (default 5) it prints
 *
 *		requests <n> seconds <s> rps <r>
 *
 *	  counting the answers received in that time (status 200 or not;
 *	  "errors <n>" is added if some were not 200).  Answers must carry a
 *	  Content-Length.  Exits 1 if a connection fails.
 *
 * Measured 2026-11-27 on the 2-core development machine, server with one
 * thread started in the background, load generator with one thread:
 *	  bench/mock_agent -p 0 &
 *	  bench/mock_agent --load 127.0.0.1:PORT -c 32 -d 5
 *	  => 135,778 162,686 196,739 requests/s in three runs (median about
 *	  163,000; the spread is the machine, which was shared), and about
 *	  54,000 requests/s with -c 1.  Both processes share the 2 cores, so a
 *	  dispatcher under test should not find the mock its limit.
 *
 * bench/mock_agent.c
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#define MAX_EVENTS		256
#define READ_SIZE		65536
#define MAX_HEADER		(64 * 1024)
#define MAX_BODY		(64 * 1024 * 1024)

#define REPLY_BODY \
	"{\"type\":\"start\"}\n" \
	"{\"type\":\"text-start\",\"id\":\"t\"}\n" \
	"{\"type\":\"text-delta\",\"id\":\"t\",\"delta\":\"ok\"}\n" \
	"{\"type\":\"text-end\",\"id\":\"t\"}\n" \
	"{\"type\":\"finish\"}\n"

static volatile sig_atomic_t stop_requested = 0;

/* A growable byte buffer; bytes before off are consumed */
typedef struct Buf
{
	char	   *data;
	size_t		off;
	size_t		len;
	size_t		cap;
} Buf;

/* One connection, either side */
typedef struct Conn
{
	int			fd;
	Buf			in;
	Buf			out;
	bool		close_after;	/* close once out is written */
	bool		sent_continue;	/* 100 Continue sent for the current request */
	bool		want_out;		/* EPOLLOUT registered */
	/* load generator only */
	long		done;			/* answers received */
	long		errors;			/* of which not 200 */
} Conn;

static char reply_keepalive[512];
static size_t reply_keepalive_len;
static char reply_close[512];
static size_t reply_close_len;

static _Noreturn void
die(const char *what)
{
	fprintf(stderr, "mock_agent: %s: %s\n", what, strerror(errno));
	exit(1);
}

static _Noreturn void
fail(const char *msg)
{
	fprintf(stderr, "mock_agent: %s\n", msg);
	exit(1);
}

static void
handle_stop(int sig)
{
	(void) sig;
	stop_requested = 1;
}

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
buf_reserve(Buf *b, size_t more)
{
	if (b->off > 0 && (b->off == b->len || b->len + more > b->cap))
	{
		/* compact: drop the consumed bytes */
		memmove(b->data, b->data + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
	}
	if (b->len + more > b->cap)
	{
		size_t		cap = b->cap ? b->cap : 4096;

		while (cap < b->len + more)
			cap *= 2;
		b->data = realloc(b->data, cap);
		if (b->data == NULL)
			fail("out of memory");
		b->cap = cap;
	}
}

static void
buf_append(Buf *b, const char *data, size_t len)
{
	buf_reserve(b, len);
	memcpy(b->data + b->len, data, len);
	b->len += len;
}

static void
set_nonblocking(int fd)
{
	int			flags = fcntl(fd, F_GETFL, 0);

	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
		die("fcntl");
}

static void
set_nodelay(int fd)
{
	int			one = 1;

	(void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Case-insensitive: does the header line [p, end) have this name? */
static const char *
header_value(const char *p, const char *end, const char *name)
{
	size_t		n = strlen(name);

	if ((size_t) (end - p) <= n || strncasecmp(p, name, n) != 0 || p[n] != ':')
		return NULL;
	p += n + 1;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	return p;
}

/* Case-insensitive search for a token in [p, end) */
static bool
value_has(const char *p, const char *end, const char *token)
{
	size_t		n = strlen(token);

	for (; p + n <= end; p++)
		if (strncasecmp(p, token, n) == 0)
			return true;
	return false;
}

/*
 * Where a chunked body starting at p ends (the offset just past the last
 * chunk's trailers), -1 if it is not all in yet, -2 if it is malformed.
 */
static long
chunked_end(const char *start, const char *end)
{
	const char *p = start;

	for (;;)
	{
		const char *nl = memchr(p, '\n', end - p);
		unsigned long size = 0;
		const char *q;

		if (nl == NULL)
			return (end - p > 1024) ? -2 : -1;
		for (q = p; q < nl && isxdigit((unsigned char) *q); q++)
		{
			size = size * 16 + (isdigit((unsigned char) *q) ? *q - '0' :
								(tolower((unsigned char) *q) - 'a' + 10));
			if (size > MAX_BODY)
				return -2;
		}
		if (q == p)
			return -2;
		p = nl + 1;
		if (size == 0)
		{
			/* trailers, up to an empty line */
			for (;;)
			{
				nl = memchr(p, '\n', end - p);
				if (nl == NULL)
					return -1;
				if (nl == p || (nl == p + 1 && *p == '\r'))
					return (nl + 1) - start;
				p = nl + 1;
			}
		}
		if ((size_t) (end - p) < size + 2)
			return -1;
		p += size;
		if (p[0] == '\r' && p[1] == '\n')
			p += 2;
		else if (p[0] == '\n')
			p += 1;
		else
			return -2;
	}
}

static void
conn_free(int epfd, Conn *c)
{
	epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c->in.data);
	free(c->out.data);
	free(c);
}

/* Write what we can; false if the connection is to be closed */
static bool
conn_flush(int epfd, Conn *c)
{
	while (c->out.off < c->out.len)
	{
		ssize_t		n = send(c->fd, c->out.data + c->out.off,
							 c->out.len - c->out.off, MSG_NOSIGNAL);

		if (n < 0)
		{
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return false;
		}
		c->out.off += n;
	}
	if (c->out.off == c->out.len)
	{
		c->out.off = c->out.len = 0;
		if (c->close_after)
			return false;
	}

	/* EPOLLOUT only while something waits to be written */
	if ((c->out.len > 0) != c->want_out)
	{
		struct epoll_event ev;

		c->want_out = (c->out.len > 0);
		ev.events = EPOLLIN | (c->want_out ? EPOLLOUT : 0);
		ev.data.ptr = c;
		if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
			return false;
	}
	return true;
}

static void
server_error(Conn *c, int code, const char *reason)
{
	char		buf[256];
	int			n;

	n = snprintf(buf, sizeof(buf),
				 "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\n"
				 "Content-Length: %zu\r\nConnection: close\r\n\r\n%s\n",
				 code, reason, strlen(reason) + 1, reason);
	buf_append(&c->out, buf, n);
	c->close_after = true;
}

/*
 * Answer the complete requests in c->in.  Stops at an incomplete one, or
 * after one that closes the connection.
 */
static void
server_process(Conn *c)
{
	if (c->in.data == NULL)
		return;
	while (!c->close_after && c->in.off < c->in.len)
	{
		const char *start = c->in.data + c->in.off;
		const char *end = c->in.data + c->in.len;
		const char *hdr_end;
		const char *line;
		const char *eol;
		const char *body;
		bool		post;
		bool		http10;
		bool		keepalive = false;
		bool		conn_close = false;
		bool		chunked = false;
		bool		expect = false;
		long		clen = 0;
		long		total;

		/* stray CRLFs between requests */
		while (start < end && (*start == '\r' || *start == '\n'))
		{
			start++;
			c->in.off++;
		}
		if (start == end)
			return;
		hdr_end = memmem(start, end - start, "\r\n\r\n", 4);
		if (hdr_end == NULL)
		{
			if (end - start > MAX_HEADER)
				server_error(c, 431, "Request Header Fields Too Large");
			return;
		}

		/* request line */
		eol = memchr(start, '\n', hdr_end + 2 - start);
		if (eol == NULL || memchr(start, ' ', eol - start) == NULL)
		{
			server_error(c, 400, "Bad Request");
			return;
		}
		post = (eol - start > 5 && memcmp(start, "POST ", 5) == 0);
		http10 = value_has(start, eol, "HTTP/1.0");

		/* headers */
		for (line = eol + 1; line < hdr_end + 2; line = eol + 1)
		{
			const char *lend;
			const char *v;

			eol = memchr(line, '\n', hdr_end + 2 - line);
			if (eol == NULL)
				break;
			lend = (eol > line && eol[-1] == '\r') ? eol - 1 : eol;
			if ((v = header_value(line, lend, "content-length")) != NULL)
			{
				char	   *e;

				errno = 0;
				clen = strtol(v, &e, 10);
				if (e == v || errno != 0 || clen < 0)
				{
					server_error(c, 400, "Bad Request");
					return;
				}
			}
			else if ((v = header_value(line, lend, "transfer-encoding")) != NULL)
				chunked = value_has(v, lend, "chunked");
			else if ((v = header_value(line, lend, "connection")) != NULL)
			{
				conn_close = value_has(v, lend, "close");
				keepalive = value_has(v, lend, "keep-alive");
			}
			else if ((v = header_value(line, lend, "expect")) != NULL)
				expect = value_has(v, lend, "100-continue");
		}

		/* body */
		body = hdr_end + 4;
		if (chunked)
		{
			long		n = chunked_end(body, end);

			if (n == -2)
			{
				server_error(c, 400, "Bad Request");
				return;
			}
			if (n == -1 && body - start + (end - body) > MAX_BODY)
			{
				server_error(c, 413, "Payload Too Large");
				return;
			}
			total = (n < 0) ? -1 : (body - start) + n;
		}
		else
		{
			if (clen > MAX_BODY)
			{
				server_error(c, 413, "Payload Too Large");
				return;
			}
			total = (end - body >= clen) ? (body - start) + clen : -1;
		}
		if (total < 0)
		{
			if (expect && !c->sent_continue)
			{
				buf_append(&c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
				c->sent_continue = true;
			}
			return;
		}

		/* the request is complete: consume it and answer */
		c->in.off += total;
		c->sent_continue = false;
		if (conn_close || (http10 && !keepalive))
			c->close_after = true;
		if (!post)
		{
			static const char r405[] =
				"HTTP/1.1 405 Method Not Allowed\r\nAllow: POST\r\n"
				"Content-Length: 0\r\n\r\n";

			buf_append(&c->out, r405, sizeof(r405) - 1);
		}
		else if (c->close_after)
			buf_append(&c->out, reply_close, reply_close_len);
		else
			buf_append(&c->out, reply_keepalive, reply_keepalive_len);
	}
}

/* One server thread: its own listener and epoll loop */
static void *
server_thread(void *arg)
{
	int			lfd = *(int *) arg;
	int			epfd = epoll_create1(0);
	struct epoll_event ev;
	struct epoll_event events[MAX_EVENTS];

	if (epfd < 0)
		die("epoll_create1");
	ev.events = EPOLLIN;
	ev.data.ptr = NULL;			/* the listener */
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev) < 0)
		die("epoll_ctl");

	while (!stop_requested)
	{
		int			n = epoll_wait(epfd, events, MAX_EVENTS, 200);
		int			i;

		if (n < 0)
		{
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (i = 0; i < n; i++)
		{
			Conn	   *c = events[i].data.ptr;

			if (c == NULL)
			{
				/* accept everything pending */
				for (;;)
				{
					int			fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);

					if (fd < 0)
						break;
					set_nodelay(fd);
					c = calloc(1, sizeof(Conn));
					if (c == NULL)
						fail("out of memory");
					c->fd = fd;
					ev.events = EPOLLIN;
					ev.data.ptr = c;
					if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
						die("epoll_ctl");
				}
				continue;
			}

			if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
			{
				bool		gone = false;

				/* read what is there (bounded, so one client cannot starve) */
				for (int rounds = 0; rounds < 16; rounds++)
				{
					ssize_t		r;

					buf_reserve(&c->in, READ_SIZE);
					r = recv(c->fd, c->in.data + c->in.len, READ_SIZE, 0);
					if (r > 0)
					{
						c->in.len += r;
						if (r < READ_SIZE)
							break;
						continue;
					}
					if (r < 0 && errno == EINTR)
						continue;
					if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
						break;
					gone = true;	/* EOF or error */
					break;
				}
				server_process(c);
				if (c->in.off == c->in.len)
					c->in.off = c->in.len = 0;
				if (gone)
				{
					/* answer what came before the EOF, best effort */
					c->close_after = true;
					(void) conn_flush(epfd, c);
					conn_free(epfd, c);
					continue;
				}
			}
			if (!conn_flush(epfd, c))
				conn_free(epfd, c);
		}
	}
	close(epfd);
	return NULL;
}

static int
make_listener(int port, bool reuseport)
{
	int			fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	int			one = 1;
	struct sockaddr_in sa;

	if (fd < 0)
		die("socket");
	(void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (reuseport &&
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		die("SO_REUSEPORT");
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons(port);
	if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
		die("bind 127.0.0.1");
	if (listen(fd, 1024) < 0)
		die("listen");
	return fd;
}

static int
run_server(int port, const char *portfile, int nthreads)
{
	int		   *lfds = calloc(nthreads, sizeof(int));
	pthread_t  *threads = calloc(nthreads, sizeof(pthread_t));
	struct sockaddr_in sa;
	socklen_t	salen = sizeof(sa);
	int			i;

	if (lfds == NULL || threads == NULL)
		fail("out of memory");

	snprintf(reply_keepalive, sizeof(reply_keepalive),
			 "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
			 "Content-Length: %zu\r\n\r\n%s",
			 strlen(REPLY_BODY), REPLY_BODY);
	reply_keepalive_len = strlen(reply_keepalive);
	snprintf(reply_close, sizeof(reply_close),
			 "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
			 "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
			 strlen(REPLY_BODY), REPLY_BODY);
	reply_close_len = strlen(reply_close);

	/* the first listener fixes the port, the others share it */
	lfds[0] = make_listener(port, nthreads > 1);
	if (getsockname(lfds[0], (struct sockaddr *) &sa, &salen) < 0)
		die("getsockname");
	port = ntohs(sa.sin_port);
	for (i = 1; i < nthreads; i++)
		lfds[i] = make_listener(port, true);

	if (portfile != NULL)
	{
		size_t		len = strlen(portfile) + 5;
		char	   *tmp = malloc(len);
		FILE	   *f;

		if (tmp == NULL)
			fail("out of memory");
		snprintf(tmp, len, "%s.tmp", portfile);
		f = fopen(tmp, "w");
		if (f == NULL)
			die(tmp);
		fprintf(f, "%d\n", port);
		if (fclose(f) != 0)
			die(tmp);
		if (rename(tmp, portfile) < 0)
			die(portfile);
		free(tmp);
	}
	printf("port %d\n", port);
	fflush(stdout);

	for (i = 1; i < nthreads; i++)
		if (pthread_create(&threads[i], NULL, server_thread, &lfds[i]) != 0)
			fail("cannot create a thread");
	server_thread(&lfds[0]);
	for (i = 1; i < nthreads; i++)
		pthread_join(threads[i], NULL);
	for (i = 0; i < nthreads; i++)
		close(lfds[i]);
	free(lfds);
	free(threads);
	return 0;
}

/* ------------------------------------------------------------ load mode */

typedef struct LoadThread
{
	pthread_t	thread;
	struct sockaddr_storage addr;
	socklen_t	addrlen;
	int			nconns;
	double		start;
	double		deadline;
	long		done;
	long		errors;
	const char *request;
	size_t		request_len;
} LoadThread;

/*
 * The answers complete in c->in, counted; false if one is malformed.
 * Needs a Content-Length (the server's answers all have one).
 */
static bool
load_consume(Conn *c, bool *complete)
{
	*complete = false;
	for (;;)
	{
		const char *start = c->in.data + c->in.off;
		const char *end = c->in.data + c->in.len;
		const char *hdr_end = memmem(start, end - start, "\r\n\r\n", 4);
		const char *line;
		const char *eol;
		long		clen = -1;
		int			status;

		if (hdr_end == NULL)
			return true;
		if (end - start < 12 || memcmp(start, "HTTP/1.", 7) != 0)
			return false;
		status = atoi(start + 9);
		for (line = start; line < hdr_end; line = eol + 1)
		{
			const char *v;

			eol = memchr(line, '\n', hdr_end + 2 - line);
			if (eol == NULL)
				break;
			if ((v = header_value(line, eol, "content-length")) != NULL)
				clen = atol(v);
		}
		if (status == 100)
		{
			c->in.off += (hdr_end + 4) - start;
			continue;
		}
		if (clen < 0)
			return false;
		if (end - (hdr_end + 4) < clen)
			return true;
		c->in.off += (hdr_end + 4 - start) + clen;
		c->done++;
		if (status != 200)
			c->errors++;
		*complete = true;
		return true;
	}
}

static void *
load_thread(void *arg)
{
	LoadThread *lt = arg;
	int			epfd = epoll_create1(0);
	struct epoll_event events[MAX_EVENTS];
	Conn	  **conns = calloc(lt->nconns, sizeof(Conn *));
	int			live = lt->nconns;
	int			i;

	if (epfd < 0)
		die("epoll_create1");
	if (conns == NULL)
		fail("out of memory");

	for (i = 0; i < lt->nconns; i++)
	{
		Conn	   *c = calloc(1, sizeof(Conn));
		struct epoll_event ev;

		if (c == NULL)
			fail("out of memory");
		c->fd = socket(lt->addr.ss_family, SOCK_STREAM, 0);
		if (c->fd < 0)
			die("socket");
		if (connect(c->fd, (struct sockaddr *) &lt->addr, lt->addrlen) < 0)
			die("connect");
		set_nodelay(c->fd);
		set_nonblocking(c->fd);
		ev.events = EPOLLIN;
		ev.data.ptr = c;
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
			die("epoll_ctl");
		conns[i] = c;
	}

	/* everyone starts together */
	while (now_seconds() < lt->start)
		usleep(1000);
	for (i = 0; i < lt->nconns; i++)
	{
		buf_append(&conns[i]->out, lt->request, lt->request_len);
		if (!conn_flush(epfd, conns[i]))
			fail("send failed");
	}

	while (live > 0 && !stop_requested)
	{
		double		left = lt->deadline - now_seconds();
		int			n;

		if (left <= 0)
			break;
		n = epoll_wait(epfd, events, MAX_EVENTS, (int) (left * 1000) + 1);
		if (n < 0)
		{
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (i = 0; i < n; i++)
		{
			Conn	   *c = events[i].data.ptr;

			if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
			{
				ssize_t		r;
				bool		complete;

				buf_reserve(&c->in, READ_SIZE);
				r = recv(c->fd, c->in.data + c->in.len, READ_SIZE, 0);
				if (r < 0 && (errno == EAGAIN || errno == EINTR))
					continue;
				if (r <= 0)
				{
					fprintf(stderr, "mock_agent: connection lost: %s\n",
							r == 0 ? "closed by the server" : strerror(errno));
					exit(1);
				}
				c->in.len += r;
				if (!load_consume(c, &complete))
					fail("malformed answer (no Content-Length?)");
				if (complete && now_seconds() < lt->deadline)
					buf_append(&c->out, lt->request, lt->request_len);
				else if (complete)
				{
					live--;
					continue;
				}
			}
			if (!conn_flush(epfd, c))
				fail("send failed");
		}
	}

	for (i = 0; i < lt->nconns; i++)
	{
		lt->done += conns[i]->done;
		lt->errors += conns[i]->errors;
		conn_free(epfd, conns[i]);
	}
	free(conns);
	close(epfd);
	return NULL;
}

/* A request like the dispatcher's (protocol fleetlm), 600 bytes in all */
static char *
make_request(const char *host, size_t *len)
{
	char		body[1024];
	char		head[512];
	char	   *req;
	int			hl;
	int			bl;
	int			pad;

	bl = snprintf(body, sizeof(body),
				  "{\"session_id\":\"01JBENCHSESSION0000000000001\","
				  "\"agent_id\":\"bench-agent\",\"user_id\":\"bench-user\","
				  "\"turn\":1,\"attempt\":1,\"messages\":[{\"seq\":1,"
				  "\"sender_id\":\"bench-user\",\"kind\":\"text\","
				  "\"content\":{\"text\":\"%%s\"},\"metadata\":{},"
				  "\"inserted_at\":\"2026-11-27T00:00:00.000000Z\"}]}");
	hl = snprintf(head, sizeof(head),
				  "POST /webhook HTTP/1.1\r\nHost: %s\r\n"
				  "Content-Type: application/json\r\n"
				  "Idempotency-Key: 01JBENCHSESSION0000000000001:1\r\n"
				  "Content-Length: 000\r\n\r\n", host);
	/* the text pads the whole request to 600 bytes (at least 10 chars) */
	pad = 600 - hl - (bl - 2);
	if (pad < 10)
		pad = 10;
	bl = bl - 2 + pad;
	hl = snprintf(head, sizeof(head),
				  "POST /webhook HTTP/1.1\r\nHost: %s\r\n"
				  "Content-Type: application/json\r\n"
				  "Idempotency-Key: 01JBENCHSESSION0000000000001:1\r\n"
				  "Content-Length: %03d\r\n\r\n", host, bl);
	req = malloc(hl + bl + 1);
	if (req == NULL)
		fail("out of memory");
	memcpy(req, head, hl);
	{
		char	   *text = malloc(pad + 1);

		if (text == NULL)
			fail("out of memory");
		memset(text, 'x', pad);
		text[pad] = '\0';
		snprintf(req + hl, bl + 1, body, text);
		free(text);
	}
	*len = hl + bl;
	return req;
}

static int
run_load(const char *target, int nconns, double seconds, int nthreads)
{
	char	   *host = strdup(target);
	char	   *colon = host ? strrchr(host, ':') : NULL;
	struct addrinfo hints;
	struct addrinfo *ai;
	LoadThread *lts;
	size_t		request_len;
	char	   *request;
	double		start;
	long		done = 0;
	long		errors = 0;
	int			i;
	int			rc;

	if (colon == NULL)
		fail("--load wants HOST:PORT");
	*colon = '\0';
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if ((rc = getaddrinfo(host, colon + 1, &hints, &ai)) != 0)
	{
		fprintf(stderr, "mock_agent: %s: %s\n", target, gai_strerror(rc));
		return 1;
	}
	if (nthreads > nconns)
		nthreads = nconns;
	request = make_request(target, &request_len);

	lts = calloc(nthreads, sizeof(LoadThread));
	if (lts == NULL)
		fail("out of memory");
	start = now_seconds() + 0.2;	/* time to connect */
	for (i = 0; i < nthreads; i++)
	{
		LoadThread *lt = &lts[i];

		memcpy(&lt->addr, ai->ai_addr, ai->ai_addrlen);
		lt->addrlen = ai->ai_addrlen;
		lt->nconns = nconns / nthreads + (i < nconns % nthreads ? 1 : 0);
		lt->start = start;
		lt->deadline = start + seconds;
		lt->request = request;
		lt->request_len = request_len;
		if (pthread_create(&lt->thread, NULL, load_thread, lt) != 0)
			fail("cannot create a thread");
	}
	for (i = 0; i < nthreads; i++)
	{
		pthread_join(lts[i].thread, NULL);
		done += lts[i].done;
		errors += lts[i].errors;
	}
	seconds = now_seconds() - start;
	if (errors > 0)
		printf("requests %ld seconds %.2f rps %.0f errors %ld\n",
			   done, seconds, done / seconds, errors);
	else
		printf("requests %ld seconds %.2f rps %.0f\n",
			   done, seconds, done / seconds);
	fflush(stdout);
	freeaddrinfo(ai);
	free(lts);
	free(request);
	free(host);
	return 0;
}

static void
usage(FILE *f)
{
	fprintf(f,
			"Usage: mock_agent [-p PORT] [-f PORTFILE] [-t THREADS]\n"
			"       mock_agent --load HOST:PORT [-c CONNS] [-d SECONDS] [-t THREADS]\n"
			"\n"
			"Server: answers every POST on 127.0.0.1:PORT (0: a free port, the\n"
			"default) at once with a fixed JSONL reply; prints \"port <n>\".\n"
			"Load: CONNS keep-alive connections (default 32), each sending a\n"
			"600-byte POST and waiting for the answer, for SECONDS (default 5);\n"
			"prints \"requests <n> seconds <s> rps <r>\".\n");
}

int
main(int argc, char **argv)
{
	const char *load = NULL;
	const char *portfile = NULL;
	int			port = 0;
	int			nthreads = 1;
	int			nconns = 32;
	double		seconds = 5;
	int			i;
	struct sigaction sa;

	for (i = 1; i < argc; i += 2)
	{
		const char *a = argv[i];
		const char *v = (i + 1 < argc) ? argv[i + 1] : NULL;

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
		{
			usage(stdout);
			return 0;
		}
		if (v == NULL)
		{
			usage(stderr);
			return 2;
		}
		if (strcmp(a, "--load") == 0)
			load = v;
		else if (strcmp(a, "-p") == 0)
			port = atoi(v);
		else if (strcmp(a, "-f") == 0)
			portfile = v;
		else if (strcmp(a, "-t") == 0)
			nthreads = atoi(v);
		else if (strcmp(a, "-c") == 0)
			nconns = atoi(v);
		else if (strcmp(a, "-d") == 0)
			seconds = atof(v);
		else
		{
			usage(stderr);
			return 2;
		}
	}
	if (port < 0 || port > 65535 || nthreads < 1 || nthreads > 256 ||
		nconns < 1 || seconds <= 0)
	{
		usage(stderr);
		return 2;
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handle_stop;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (load != NULL)
		return run_load(load, nconns, seconds, nthreads);
	return run_server(port, portfile, nthreads);
}

//go:build ignore

/* The line above keeps the go tool from refusing a .c file in a package without
 * cgo; this file is built by cc (Makefile, and the package's test), not by go. */

/*
 * clibevent: a single-threaded libevent server in C for concbench's `echo` and
 * `rpc` wire formats (see internal/proto): the seeds' "library form of a
 * reactor", to compare the hand-written reactor (models/reactor.go) and the
 * epoll loops with the library everyone uses.
 *
 *   clibevent -proto echo|rpc -addr 127.0.0.1:PORT [-max-frame N] [-allow-remote]
 *
 * It is a reference peer, not one of the models: written the way libevent's
 * documentation shows, with its defaults, and not tuned beyond that:
 *  - One event_base (epoll underneath), an evconnlistener on the listening
 *    socket, a socket bufferevent per connection (libevent reads into its input
 *    evbuffer and writes its output evbuffer for us), TCP_NODELAY on each like
 *    every Go model.
 *  - echo: the input is upper-cased in place (evbuffer_peek) and moved to the
 *    output without a copy (evbuffer_add_buffer). rpc: a frame is made
 *    contiguous (evbuffer_pullup), answered into the output, drained.
 *  - Back-pressure: reading is disabled while the output holds 256 KiB or more,
 *    and enabled again from the write callback, which the write low-water mark
 *    calls once it drains below that.
 *  - The peer's FIN: everything owed is written, then the connection is freed.
 *    rpc: a frame longer than -max-frame (default 1 MiB) ends the input the same
 *    way (the replies owed are written, then the close).
 *  - Out of descriptors (EMFILE, ENFILE, ENOBUFS, ENOMEM) the listener is
 *    disabled for 100 ms by a timer instead of spinning.
 *  - SIGTERM/SIGINT through evsignal: the loop exits, everything is freed, exit 0.
 *
 * Limits: one core by construction; no per-request work; no idle timeout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HIGH_WATER      (256 * 1024) /* stop reading at this much unsent output */
#define ACCEPT_PAUSE_MS 100
#define BACKLOG         4096

struct conn {
	struct bufferevent *bev;
	int closing;             /* no more input: free once the output drained */
	struct conn *prev, *next; /* every connection, to free them at exit */
};

static enum { ECHO, RPC } proto = ECHO;
static size_t max_frame = 1 << 20;
static int lfd;
static struct event_base *base;
static struct evconnlistener *listener;
static struct event *resume; /* ends an accept pause */
static struct conn *all;

static void usage(FILE *f, int code)
{
	fprintf(f, "usage: clibevent -proto echo|rpc [-addr 127.0.0.1:7000] [-max-frame N] [-allow-remote]\n"
		"  -proto P        protocol: echo | rpc (default echo)\n"
		"  -addr HOST:PORT listen address, numeric IPv4/[IPv6] or localhost; port 0 picks a free one\n"
		"  -max-frame N    largest rpc payload in bytes, 1..4294967295 (default 1048576)\n"
		"  -allow-remote   allow a non-loopback address\n"
		"First stdout line: \"listening on HOST:PORT\". SIGTERM/SIGINT: exit 0.\n");
	exit(code);
}

static void die(const char *what)
{
	fprintf(stderr, "clibevent: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void upper(char *dst, const char *src, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)src[i];
		dst[i] = (char)((unsigned)(ch - 'a') < 26u ? ch - ('a' - 'A') : ch);
	}
}

static void conn_free(struct conn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		all = c->next;
	if (c->next)
		c->next->prev = c->prev;
	bufferevent_free(c->bev); /* BEV_OPT_CLOSE_ON_FREE closes the socket */
	free(c);
}

/* stop_input ends c's input; it is freed once what it owes is written. */
static void stop_input(struct conn *c)
{
	c->closing = 1;
	bufferevent_disable(c->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		conn_free(c);
}

/* answer turns what the input holds into replies; -1 on a bad frame. */
static int answer(struct evbuffer *in, struct evbuffer *out)
{
	if (proto == ECHO) {
		int n = evbuffer_peek(in, -1, NULL, NULL, 0);
		struct evbuffer_iovec stackv[16], *v = n <= 16 ? stackv : malloc((size_t)n * sizeof *v);
		if (!v)
			return -1;
		evbuffer_peek(in, -1, NULL, v, n);
		for (int i = 0; i < n; i++)
			upper(v[i].iov_base, v[i].iov_base, v[i].iov_len);
		if (v != stackv)
			free(v);
		return evbuffer_add_buffer(out, in);
	}
	for (;;) {
		unsigned char h[4];
		if (evbuffer_copyout(in, h, 4) < 4)
			return 0;
		uint32_t l = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
		if (l > max_frame)
			return -1;
		if (evbuffer_get_length(in) < 4 + (size_t)l)
			return 0;
		unsigned char *f = evbuffer_pullup(in, 4 + (ssize_t)l);
		if (!f)
			return -1;
		upper((char *)f + 4, (char *)f + 4, l);
		if (evbuffer_add(out, f, 4 + (size_t)l) < 0)
			return -1;
		evbuffer_drain(in, 4 + (size_t)l);
	}
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *out = bufferevent_get_output(bev);
	if (answer(bufferevent_get_input(bev), out) < 0) {
		stop_input(c);
		return;
	}
	if (evbuffer_get_length(out) >= HIGH_WATER)
		bufferevent_disable(bev, EV_READ); /* back-pressure: write_cb enables it */
}

/* write_cb runs once the output drained below the write low-water mark. */
static void write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	if (c->closing) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			conn_free(c);
		return;
	}
	if (!(bufferevent_get_enabled(bev) & EV_READ))
		bufferevent_enable(bev, EV_READ);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct conn *c = arg;
	if (what & BEV_EVENT_ERROR) { /* ECONNRESET, EPIPE, ...: that connection only */
		conn_free(c);
		return;
	}
	if (what & BEV_EVENT_EOF)
		stop_input(c);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	(void)l, (void)sa, (void)salen, (void)arg;
	int one = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct conn *c = calloc(1, sizeof *c);
	struct bufferevent *bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c || !bev) {
		free(c);
		if (bev)
			bufferevent_free(bev);
		else
			close(fd);
		return;
	}
	c->bev = bev;
	c->next = all;
	if (all)
		all->prev = c;
	all = c;
	bufferevent_setcb(bev, read_cb, write_cb, event_cb, c);
	bufferevent_setwatermark(bev, EV_WRITE, HIGH_WATER - 1, 0);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	(void)arg;
	static int logged;
	int err = EVUTIL_SOCKET_ERROR();
	if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
		if (!logged++)
			fprintf(stderr, "clibevent: accept: %s; pausing accept for %d ms (logged once)\n",
				strerror(err), ACCEPT_PAUSE_MS);
		evconnlistener_disable(l);
		struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};
		evtimer_add(resume, &tv);
		return;
	}
	fprintf(stderr, "clibevent: accept: %s\n", strerror(err));
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what, (void)arg;
	evconnlistener_enable(listener);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)sig, (void)what, (void)arg;
	event_base_loopexit(base, NULL);
}

/* parse_addr fills sa from HOST:PORT ([v6]:PORT, localhost:PORT); -1 if malformed. */
static int parse_addr(const char *s, struct sockaddr_storage *sa, socklen_t *len, int *loopback)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	if (!colon || (size_t)(colon - s) >= sizeof host)
		return -1;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = 0;
	char *end;
	errno = 0;
	unsigned long port = strtoul(colon + 1, &end, 10);
	if (!colon[1] || *end || errno || port > 65535)
		return -1;
	memset(sa, 0, sizeof *sa);
	struct sockaddr_in *v4 = (struct sockaddr_in *)sa;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)sa;
	size_t hl = strlen(host);
	if (hl > 2 && host[0] == '[' && host[hl - 1] == ']') {
		host[hl - 1] = 0;
		if (inet_pton(AF_INET6, host + 1, &v6->sin6_addr) != 1)
			return -1;
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((uint16_t)port);
		*len = sizeof *v6;
		*loopback = IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr);
		return 0;
	}
	if (strcmp(host, "localhost") == 0)
		strcpy(host, "127.0.0.1");
	if (inet_pton(AF_INET, host, &v4->sin_addr) != 1)
		return -1;
	v4->sin_family = AF_INET;
	v4->sin_port = htons((uint16_t)port);
	*len = sizeof *v4;
	*loopback = (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
	return 0;
}

int main(int argc, char **argv)
{
	const char *addr = "127.0.0.1:7000";
	int allow_remote = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = NULL;
		if (a[0] != '-')
			usage(stderr, 2);
		a += a[1] == '-' ? 2 : 1; /* -flag or --flag, value as next arg or =value */
		const char *eq = strchr(a, '=');
		size_t k = eq ? (size_t)(eq - a) : strlen(a);
		if ((k == 1 && a[0] == 'h') || (k == 4 && !strncmp(a, "help", 4)))
			usage(stdout, 0);
		if (k == 12 && !strncmp(a, "allow-remote", k) && !eq) {
			allow_remote = 1;
			continue;
		}
		if (eq)
			v = eq + 1;
		else if (i + 1 < argc)
			v = argv[++i];
		else
			usage(stderr, 2);
		if (k == 5 && !strncmp(a, "proto", k)) {
			if (!strcmp(v, "echo"))
				proto = ECHO;
			else if (!strcmp(v, "rpc"))
				proto = RPC;
			else {
				fprintf(stderr, "clibevent: -proto %s: valid values are echo, rpc\n", v);
				usage(stderr, 2);
			}
		} else if (k == 4 && !strncmp(a, "addr", k)) {
			addr = v;
		} else if (k == 9 && !strncmp(a, "max-frame", k)) {
			char *end;
			errno = 0;
			unsigned long long m = strtoull(v, &end, 10);
			if (!*v || *end || errno || m == 0 || m > 0xffffffffULL || v[0] == '-') {
				fprintf(stderr, "clibevent: -max-frame %s: must be 1..4294967295\n", v);
				usage(stderr, 2);
			}
			max_frame = (size_t)m;
		} else {
			fprintf(stderr, "clibevent: unknown flag %s\n", argv[i - (eq ? 0 : 1)]);
			usage(stderr, 2);
		}
	}
	struct sockaddr_storage sa;
	socklen_t salen;
	int loopback;
	if (parse_addr(addr, &sa, &salen, &loopback) < 0) {
		fprintf(stderr, "clibevent: -addr %s: want IP:PORT, e.g. 127.0.0.1:7000\n", addr);
		usage(stderr, 2);
	}
	if (!loopback && !allow_remote) {
		fprintf(stderr, "clibevent: -addr %s: not loopback (binding other interfaces needs -allow-remote)\n", addr);
		usage(stderr, 2);
	}

	signal(SIGPIPE, SIG_IGN);
	lfd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (lfd < 0)
		die("socket");
	if (setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
		die("setsockopt SO_REUSEADDR");
	if (bind(lfd, (struct sockaddr *)&sa, salen) < 0)
		die("bind");
	if (listen(lfd, BACKLOG) < 0)
		die("listen");
	salen = sizeof sa;
	if (getsockname(lfd, (struct sockaddr *)&sa, &salen) < 0)
		die("getsockname");

	if (!(base = event_base_new()))
		die("event_base_new");
	listener = evconnlistener_new(base, accept_cb, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, lfd);
	if (!listener)
		die("evconnlistener_new");
	evconnlistener_set_error_cb(listener, accept_error_cb);
	resume = evtimer_new(base, resume_cb, NULL);
	struct event *term = evsignal_new(base, SIGTERM, signal_cb, NULL);
	struct event *intr = evsignal_new(base, SIGINT, signal_cb, NULL);
	if (!resume || !term || !intr || evsignal_add(term, NULL) < 0 || evsignal_add(intr, NULL) < 0)
		die("event setup");

	char host[INET6_ADDRSTRLEN];
	if (sa.ss_family == AF_INET6) {
		struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&sa;
		inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof host);
		printf("listening on [%s]:%u\n", host, ntohs(v6->sin6_port));
	} else {
		struct sockaddr_in *v4 = (struct sockaddr_in *)&sa;
		inet_ntop(AF_INET, &v4->sin_addr, host, sizeof host);
		printf("listening on %s:%u\n", host, ntohs(v4->sin_port));
	}
	fflush(stdout);

	if (event_base_dispatch(base) < 0)
		die("event_base_dispatch");
	while (all)
		conn_free(all);
	evconnlistener_free(listener); /* closes the listening socket */
	event_free(resume);
	event_free(term);
	event_free(intr);
	event_base_free(base);
	return 0;
}

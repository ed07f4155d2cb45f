//go:build ignore

/* The line above keeps the go tool from refusing a .c file in a package without
 * cgo; this file is built by cc (Makefile, and the package's test), not by go. */

/*
 * cepoll: a single-threaded epoll server in C for concbench's `echo` and `rpc`
 * wire formats (see internal/proto): the reference line that shows how close a Go
 * model gets to what one core can do.
 *
 *   cepoll -proto echo|rpc -addr 127.0.0.1:PORT [-max-frame N] [-allow-remote]
 *
 * It is a reference peer, not one of the models: it is written the way a careful C
 * programmer writes such a server in a few hundred lines and is deliberately not
 * tuned beyond that (no io_uring, no SO_REUSEPORT shards, no writev batching).
 * Like every Go model (and nginx's default for keep-alive connections) it sets
 * TCP_NODELAY on accepted TCP sockets. Changing it to win a benchmark would defeat
 * its purpose.
 *
 * Design:
 *  - One thread, one epoll set, LEVEL-triggered. Why not edge-triggered: with LT
 *    one read per ready connection per pass is correct (unread input is reported
 *    again), which gives fairness between connections for free and saves the extra
 *    read-until-EAGAIN that ET needs on every request; back-pressure is simply
 *    dropping EPOLLIN from the interest set. The price is an epoll_ctl(MOD) when a
 *    connection starts or stops waiting for EPOLLOUT, which is rare: replies are
 *    written at once and only what the socket refuses is queued.
 *  - Descriptors are non-blocking; accept4(SOCK_NONBLOCK|SOCK_CLOEXEC) in batches
 *    of 64; EINTR and ECONNABORTED retried; EMFILE/ENFILE/ENOBUFS/ENOMEM remove the
 *    listener from epoll for 100 ms instead of spinning on it.
 *  - One 64 KiB read buffer shared by all connections; per connection only the
 *    unsent output (and, for rpc, a frame split across reads) is kept. A connection
 *    whose unsent output exceeds 256 KiB is not read until it drains below that.
 *  - echo: after the peer's FIN everything owed is written, then the socket is
 *    closed. rpc: a frame longer than -max-frame (default 1 MiB) closes that
 *    connection without its reply (replies to earlier frames are tried once).
 *  - send(MSG_NOSIGNAL) and SIGPIPE ignored: EPIPE/ECONNRESET close only that
 *    connection. SIGTERM/SIGINT arrive through a signalfd: close everything, exit 0.
 *
 * Limits: one core by construction; no per-request work (-work of the Go server);
 * no idle timeout; a connection costs a table slot and its buffers only while they
 * hold data; memory is bounded per connection by ~256 KiB + 64 KiB + one frame.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define READ_BUF        (64 * 1024)  /* bytes per read */
#define HIGH_WATER      (256 * 1024) /* stop reading above this much unsent output */
#define KEEP_CAP        (64 * 1024)  /* larger buffers are freed once drained */
#define ACCEPT_BATCH    64
#define ACCEPT_PAUSE_MS 100
#define MAX_EVENTS      256
#define BACKLOG         4096

struct conn {
	int fd;
	int eof;                /* the peer sent FIN: no more input */
	uint32_t events;        /* interest registered with epoll */
	char *out;              /* unsent output is out[off..len) */
	size_t off, len, cap;
	unsigned char hdr[4];   /* rpc: header of the current frame */
	int nh;                 /* rpc: header bytes seen */
	size_t need;            /* rpc: payload length, valid once nh == 4 */
	char *body;             /* rpc: payload of a frame split across reads */
	size_t blen, bcap;
};

static enum { ECHO, RPC } proto = ECHO;
static size_t max_frame = 1 << 20;
static int epfd, lfd, sfd;
static struct conn **conns; /* indexed by fd */
static int nconns;
static char rbuf[READ_BUF];
static char *scratch; /* rpc replies produced by one read */
static size_t scap;

static void usage(FILE *f, int code)
{
	fprintf(f, "usage: cepoll -proto echo|rpc [-addr 127.0.0.1:7000] [-max-frame N] [-allow-remote]\n"
		"  -proto P        protocol: echo | rpc (default echo)\n"
		"  -addr HOST:PORT listen address, numeric IPv4/[IPv6] or localhost; port 0 picks a free one\n"
		"  -max-frame N    largest rpc payload in bytes, 1..4294967295 (default 1048576)\n"
		"  -allow-remote   allow a non-loopback address\n"
		"First stdout line: \"listening on HOST:PORT\". SIGTERM/SIGINT: exit 0.\n");
	exit(code);
}

static void die(const char *what)
{
	fprintf(stderr, "cepoll: %s: %s\n", what, strerror(errno));
	exit(1);
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* grow makes room for n more bytes after *len in *p; -1 when out of memory. */
static int grow(char **p, size_t *cap, size_t len, size_t n)
{
	if (*cap - len >= n)
		return 0;
	size_t c = *cap ? *cap * 2 : 4096;
	while (c - len < n)
		c *= 2;
	char *q = realloc(*p, c);
	if (!q)
		return -1;
	*p = q;
	*cap = c;
	return 0;
}

static void upper(char *dst, const char *src, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)src[i];
		dst[i] = (char)((unsigned)(ch - 'a') < 26u ? ch - ('a' - 'A') : ch);
	}
}

static size_t pending(const struct conn *c) { return c->len - c->off; }

static void conn_close(struct conn *c)
{
	close(c->fd); /* also removes it from the epoll set */
	conns[c->fd] = NULL;
	free(c->out);
	free(c->body);
	free(c);
}

/* write_some sends p until done or EAGAIN; returns bytes sent, or -1 on an error
 * (ECONNRESET, EPIPE, ...) that means the connection is gone. */
static ssize_t write_some(int fd, const char *p, size_t n)
{
	size_t done = 0;
	while (done < n) {
		ssize_t w = send(fd, p + done, n - done, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -1;
		}
		done += (size_t)w;
	}
	return (ssize_t)done;
}

/* send_or_queue writes p now if nothing is queued ahead of it and queues the rest. */
static int send_or_queue(struct conn *c, const char *p, size_t n)
{
	if (pending(c) == 0) {
		ssize_t w = write_some(c->fd, p, n);
		if (w < 0)
			return -1;
		p += w;
		n -= (size_t)w;
		c->off = c->len = 0;
	}
	if (n == 0)
		return 0;
	if (c->off > 0 && c->cap - c->len < n) { /* compact before growing */
		memmove(c->out, c->out + c->off, pending(c));
		c->len -= c->off;
		c->off = 0;
	}
	if (grow(&c->out, &c->cap, c->len, n) < 0)
		return -1;
	memcpy(c->out + c->len, p, n);
	c->len += n;
	return 0;
}

static int flush(struct conn *c)
{
	ssize_t w = write_some(c->fd, c->out + c->off, pending(c));
	if (w < 0)
		return -1;
	c->off += (size_t)w;
	if (c->off == c->len) {
		c->off = c->len = 0;
		if (c->cap > KEEP_CAP) {
			free(c->out);
			c->out = NULL;
			c->cap = 0;
		}
	}
	return 0;
}

/* reply appends one rpc reply frame to the scratch buffer at *slen. */
static int reply(size_t *slen, const char *payload, size_t n)
{
	if (grow(&scratch, &scap, *slen, 4 + n) < 0)
		return -1;
	unsigned char *h = (unsigned char *)scratch + *slen;
	h[0] = (unsigned char)(n >> 24);
	h[1] = (unsigned char)(n >> 16);
	h[2] = (unsigned char)(n >> 8);
	h[3] = (unsigned char)n;
	upper(scratch + *slen + 4, payload, n);
	*slen += 4 + n;
	return 0;
}

/* rpc_feed parses src and appends the replies it completes to scratch (length in
 * *slen). Frames wholly inside src are answered from src; only a frame split across
 * reads is copied into c->body. Returns -1 on an oversize frame or no memory. */
static int rpc_feed(struct conn *c, const char *src, size_t n, size_t *slen)
{
	while (n > 0) {
		if (c->nh < 4) {
			size_t k = 4 - (size_t)c->nh < n ? 4 - (size_t)c->nh : n;
			memcpy(c->hdr + c->nh, src, k);
			c->nh += (int)k;
			src += k;
			n -= k;
			if (c->nh < 4)
				break;
			uint32_t l = (uint32_t)c->hdr[0] << 24 | (uint32_t)c->hdr[1] << 16 |
				     (uint32_t)c->hdr[2] << 8 | c->hdr[3];
			if (l > max_frame)
				return -1;
			c->need = l;
		}
		if (c->blen == 0 && n >= c->need) { /* whole frame here, L = 0 included */
			if (reply(slen, src, c->need) < 0)
				return -1;
			src += c->need;
			n -= c->need;
			c->nh = 0;
			continue;
		}
		size_t k = c->need - c->blen < n ? c->need - c->blen : n;
		if (grow(&c->body, &c->bcap, c->blen, k) < 0)
			return -1;
		memcpy(c->body + c->blen, src, k);
		c->blen += k;
		src += k;
		n -= k;
		if (c->blen == c->need) {
			if (reply(slen, c->body, c->blen) < 0)
				return -1;
			c->blen = 0;
			c->nh = 0;
			if (c->bcap > KEEP_CAP) {
				free(c->body);
				c->body = NULL;
				c->bcap = 0;
			}
		}
	}
	return 0;
}

/* read_once does one read on c and answers it; -1 means close c now. */
static int read_once(struct conn *c)
{
	ssize_t n;
	do
		n = read(c->fd, rbuf, sizeof rbuf);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
	if (n == 0) {
		c->eof = 1;
		return 0;
	}
	if (proto == ECHO) {
		upper(rbuf, rbuf, (size_t)n);
		return send_or_queue(c, rbuf, (size_t)n);
	}
	size_t slen = 0;
	int bad = rpc_feed(c, rbuf, (size_t)n, &slen);
	if (slen > 0 && send_or_queue(c, scratch, slen) < 0)
		return -1;
	if (bad < 0) { /* protocol error: one try at what was owed, then close */
		if (pending(c) > 0)
			flush(c);
		return -1;
	}
	return 0;
}

/* settle closes c if it is finished, else makes its epoll interest match its state:
 * EPOLLIN unless at EOF or above the high-water mark, EPOLLOUT while output waits. */
static void settle(struct conn *c)
{
	if (c->eof && pending(c) == 0) {
		conn_close(c);
		return;
	}
	uint32_t want = (!c->eof && pending(c) < HIGH_WATER ? EPOLLIN : 0) |
			(pending(c) > 0 ? EPOLLOUT : 0);
	if (want != c->events) {
		struct epoll_event ev = {.events = want, .data.fd = c->fd};
		if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
			conn_close(c);
			return;
		}
		c->events = want;
	}
}

static void on_conn(struct conn *c, uint32_t ev)
{
	if (ev & (EPOLLERR | EPOLLHUP)) { /* reset or fully shut: nothing can be delivered */
		conn_close(c);
		return;
	}
	if ((ev & EPOLLOUT) && pending(c) > 0 && flush(c) < 0) {
		conn_close(c);
		return;
	}
	/* At most one read per pass: level-triggered epoll reports the rest again. */
	if ((ev & EPOLLIN) && !c->eof && pending(c) < HIGH_WATER && read_once(c) < 0) {
		conn_close(c);
		return;
	}
	settle(c);
}

/* on_accept accepts a batch; returns 1 if accepting must pause (out of fds). */
static int on_accept(void)
{
	static int logged;
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				if (!logged++)
					fprintf(stderr, "cepoll: accept: %s; pausing accept for %d ms (logged once)\n",
						strerror(errno), ACCEPT_PAUSE_MS);
				return 1;
			}
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				fprintf(stderr, "cepoll: accept: %s\n", strerror(errno));
			return 0;
		}
		/* Replies must not wait for the peer's delayed ACK (Nagle); fails
		 * harmlessly on a Unix domain socket. */
		int one = 1;
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (fd >= nconns) {
			int n = nconns ? nconns : 1024;
			while (n <= fd)
				n *= 2;
			struct conn **t = realloc(conns, (size_t)n * sizeof *t);
			if (!t) {
				close(fd);
				continue;
			}
			memset(t + nconns, 0, (size_t)(n - nconns) * sizeof *t);
			conns = t;
			nconns = n;
		}
		struct conn *c = calloc(1, sizeof *c);
		struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
		if (!c || epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			free(c);
			close(fd);
			continue;
		}
		c->fd = fd;
		c->events = EPOLLIN;
		conns[fd] = c;
	}
	return 0;
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
				fprintf(stderr, "cepoll: -proto %s: valid values are echo, rpc\n", v);
				usage(stderr, 2);
			}
		} else if (k == 4 && !strncmp(a, "addr", k)) {
			addr = v;
		} else if (k == 9 && !strncmp(a, "max-frame", k)) {
			char *end;
			errno = 0;
			unsigned long long m = strtoull(v, &end, 10);
			if (!*v || *end || errno || m == 0 || m > 0xffffffffULL || v[0] == '-') {
				fprintf(stderr, "cepoll: -max-frame %s: must be 1..4294967295\n", v);
				usage(stderr, 2);
			}
			max_frame = (size_t)m;
		} else {
			fprintf(stderr, "cepoll: unknown flag %s\n", argv[i - (eq ? 0 : 1)]);
			usage(stderr, 2);
		}
	}
	struct sockaddr_storage sa;
	socklen_t salen;
	int loopback;
	if (parse_addr(addr, &sa, &salen, &loopback) < 0) {
		fprintf(stderr, "cepoll: -addr %s: want IP:PORT, e.g. 127.0.0.1:7000\n", addr);
		usage(stderr, 2);
	}
	if (!loopback && !allow_remote) {
		fprintf(stderr, "cepoll: -addr %s: not loopback (binding other interfaces needs -allow-remote)\n", addr);
		usage(stderr, 2);
	}

	signal(SIGPIPE, SIG_IGN);
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
		die("sigprocmask");
	if ((sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0)
		die("signalfd");

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

	if ((epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
		die("epoll_create1");
	struct epoll_event lev = {.events = EPOLLIN, .data.fd = lfd};
	struct epoll_event sev = {.events = EPOLLIN, .data.fd = sfd};
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev) < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &sev) < 0)
		die("epoll_ctl");

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

	struct epoll_event evs[MAX_EVENTS];
	long long paused_until = 0; /* accepting paused (listener out of epoll) until then */
	for (int running = 1; running;) {
		int timeout = -1;
		if (paused_until) {
			long long left = paused_until - now_ms();
			timeout = left > 0 ? (int)left : 0;
		}
		int n = epoll_wait(epfd, evs, MAX_EVENTS, timeout);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (int i = 0; i < n && running; i++) {
			int fd = evs[i].data.fd;
			if (fd == sfd) {
				running = 0;
			} else if (fd == lfd) {
				if (!paused_until && on_accept()) {
					epoll_ctl(epfd, EPOLL_CTL_DEL, lfd, NULL);
					paused_until = now_ms() + ACCEPT_PAUSE_MS;
				}
			} else if (fd < nconns && conns[fd]) {
				on_conn(conns[fd], evs[i].events);
			}
		}
		if (paused_until && now_ms() >= paused_until) {
			paused_until = 0;
			if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev) < 0)
				die("epoll_ctl re-add listener");
		}
	}
	for (int fd = 0; fd < nconns; fd++)
		if (conns[fd])
			conn_close(conns[fd]);
	close(lfd);
	close(sfd);
	close(epfd);
	free(conns);
	free(scratch);
	return 0;
}

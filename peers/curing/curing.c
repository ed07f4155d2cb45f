//go:build ignore

/* The line above keeps the go tool from refusing a .c file in a package without
 * cgo; this file is built by cc (Makefile, and the package's test), not by go. */

/*
 * curing: a single-threaded io_uring server in C on liburing for concbench's
 * `echo` and `rpc` wire formats (see internal/proto): the io_uring line's floor,
 * the reference the Go model `uring` (models/uring.go) is compared with, as
 * cepoll is for the epoll models.
 *
 *   curing -proto echo|rpc -addr 127.0.0.1:PORT [-max-frame N] [-allow-remote]
 *
 * It is a reference peer, not one of the models: written the way a careful C
 * programmer writes such a server with liburing in a few hundred lines, and
 * built the way the Go model is, so that the comparison isolates the language
 * and its runtime, not the design:
 *  - One thread, one ring of 4096 entries, IORING_SETUP_SINGLE_ISSUER |
 *    IORING_SETUP_DEFER_TASKRUN (completion work runs when the thread enters to
 *    wait, in a batch). One pass: io_uring_submit_and_wait (one io_uring_enter
 *    submits what the last pass queued and waits for a completion), then every
 *    completion, then every connection they touched is settled.
 *  - One multishot accept (blocking sockets, SOCK_CLOEXEC; TCP_NODELAY on each,
 *    like every Go model). EMFILE/ENFILE/ENOBUFS/ENOMEM pause accepting for
 *    100 ms instead of spinning; other errors re-arm it.
 *  - Per connection one receive armed at a time, with buffer select from a ring
 *    of 1024 provided buffers of 16 KiB (group 0) that every connection shares;
 *    the buffer goes back to the ring as soon as its bytes are answered. No
 *    receive is armed while the connection owes 256 KiB or more
 *    (back-pressure).
 *  - Replies are appended to the connection's output; one send in flight per
 *    connection, of everything owed at that moment (the output buffer is
 *    swapped with the send buffer, no copy); a partial send is resubmitted.
 *  - A connection is closed only once none of its operations is in flight
 *    (io_uring_prep_cancel_fd with IORING_ASYNC_CANCEL_ALL first), so that its
 *    descriptor number cannot be reused under a completion still to come.
 *  - echo: after the peer's FIN everything owed is sent, then the socket is
 *    closed. rpc: a frame longer than -max-frame (default 1 MiB) ends the input:
 *    the replies owed are sent, then the connection is closed.
 *  - SIGTERM/SIGINT arrive through a signalfd polled on the ring: exit 0.
 *  - Where io_uring is refused (kernel.io_uring_disabled, a seccomp filter, a
 *    kernel older than 6.1 for DEFER_TASKRUN) it says why and exits 2.
 *
 * Limits: one core by construction; no per-request work; no idle timeout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RING_ENTRIES    4096
#define NBUFS           1024         /* provided buffers, shared */
#define BUF_SIZE        (16 * 1024)  /* bytes each */
#define HIGH_WATER      (256 * 1024) /* no receive armed while this much is owed */
#define KEEP_CAP        (64 * 1024)  /* larger buffers are freed once drained */
#define ACCEPT_PAUSE_MS 100
#define BACKLOG         4096

/* Operation kinds in the top byte of user data; the low 32 bits hold the fd. */
enum { OP_SIGNAL = 1, OP_ACCEPT, OP_RECV, OP_SEND, OP_CANCEL };
#define UD(op, fd) ((uint64_t)(op) << 56 | (uint32_t)(fd))

struct conn {
	int fd;
	int eof;              /* no more input: the peer's FIN, or a bad frame */
	int dead;             /* an error: close now */
	int closing;          /* cancelled; freed once ops is 0 */
	int ops;              /* operations in flight naming fd */
	int recv_on;          /* a receive is armed */
	int dirty;            /* in the pass's list to settle */
	char *out;            /* owed, not yet handed to the kernel: out[0..len) */
	size_t len, cap;
	char *snd;            /* the send in flight: snd[soff..slen) */
	size_t soff, slen, scap;
	unsigned char hdr[4]; /* rpc: header of the current frame */
	int nh;               /* rpc: header bytes seen */
	size_t need;          /* rpc: payload length, valid once nh == 4 */
	char *body;           /* rpc: payload of a frame split across receives */
	size_t blen, bcap;
};

static enum { ECHO, RPC } proto = ECHO;
static size_t max_frame = 1 << 20;
static int lfd, sfd;
static struct io_uring ring;
static struct io_uring_buf_ring *br;
static char *bufs;
static struct conn **conns; /* indexed by fd */
static int nconns;
static struct conn **dirty;
static int ndirty, dcap;
static char *scratch; /* rpc replies produced by one receive */
static size_t scap;

static void usage(FILE *f, int code)
{
	fprintf(f, "usage: curing -proto echo|rpc [-addr 127.0.0.1:7000] [-max-frame N] [-allow-remote]\n"
		"  -proto P        protocol: echo | rpc (default echo)\n"
		"  -addr HOST:PORT listen address, numeric IPv4/[IPv6] or localhost; port 0 picks a free one\n"
		"  -max-frame N    largest rpc payload in bytes, 1..4294967295 (default 1048576)\n"
		"  -allow-remote   allow a non-loopback address\n"
		"First stdout line: \"listening on HOST:PORT\". SIGTERM/SIGINT: exit 0.\n");
	exit(code);
}

static void die(const char *what, int err)
{
	fprintf(stderr, "curing: %s: %s\n", what, strerror(err));
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

/* sqe hands out a submission entry, submitting the queued ones when the ring
 * is full. */
static struct io_uring_sqe *sqe(void)
{
	struct io_uring_sqe *s = io_uring_get_sqe(&ring);
	if (!s) {
		int r = io_uring_submit(&ring);
		if (r < 0)
			die("io_uring_submit", -r);
		s = io_uring_get_sqe(&ring);
		if (!s)
			die("io_uring_get_sqe", EBUSY);
	}
	return s;
}

static void arm_accept(void)
{
	struct io_uring_sqe *s = sqe();
	io_uring_prep_multishot_accept(s, lfd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(s, UD(OP_ACCEPT, 0));
}

static void mark(struct conn *c)
{
	if (c->dirty)
		return;
	if (ndirty == dcap) {
		dcap = dcap ? dcap * 2 : 1024;
		struct conn **d = realloc(dirty, (size_t)dcap * sizeof *d);
		if (!d)
			die("realloc", ENOMEM);
		dirty = d;
	}
	c->dirty = 1;
	dirty[ndirty++] = c;
}

static size_t owed(const struct conn *c) { return c->len + (c->slen - c->soff); }

/* append queues n reply bytes on c; -1 when out of memory. */
static int append(struct conn *c, const char *p, size_t n)
{
	if (grow(&c->out, &c->cap, c->len, n) < 0)
		return -1;
	memcpy(c->out + c->len, p, n);
	c->len += n;
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

/* on_data answers n received bytes. */
static void on_data(struct conn *c, const char *src, size_t n)
{
	if (proto == ECHO) {
		if (grow(&c->out, &c->cap, c->len, n) < 0) {
			c->dead = 1;
			return;
		}
		upper(c->out + c->len, src, n);
		c->len += n;
		return;
	}
	size_t slen = 0;
	int bad = rpc_feed(c, src, n, &slen);
	if (slen > 0 && append(c, scratch, slen) < 0) {
		c->dead = 1;
		return;
	}
	if (bad < 0) /* a protocol error: what is owed goes, then the close */
		c->eof = 1;
}

static void release(struct conn *c)
{
	close(c->fd);
	conns[c->fd] = NULL;
	free(c->out);
	free(c->snd);
	free(c->body);
	free(c);
}

/* settle moves c on after its completions: freed once cancelled and idle in the
 * kernel; its owed bytes sent; closed once finished; a receive armed while it is
 * to be read. */
static void settle(struct conn *c)
{
	if (c->closing) {
		if (c->ops == 0)
			release(c);
		return;
	}
	int sending = c->soff < c->slen;
	if (!c->dead && !sending && c->len > 0) { /* hand everything owed to the kernel */
		char *t = c->snd;
		size_t tc = c->scap;
		c->snd = c->out;
		c->scap = c->cap;
		c->slen = c->len;
		c->soff = 0;
		c->out = t;
		c->cap = tc;
		c->len = 0;
		sending = 1;
		struct io_uring_sqe *s = sqe();
		io_uring_prep_send(s, c->fd, c->snd, c->slen, MSG_NOSIGNAL);
		io_uring_sqe_set_data64(s, UD(OP_SEND, c->fd));
		c->ops++;
	}
	if (c->dead || (c->eof && owed(c) == 0)) {
		c->closing = 1;
		if (c->ops == 0) {
			release(c);
			return;
		}
		struct io_uring_sqe *s = sqe();
		io_uring_prep_cancel_fd(s, c->fd, IORING_ASYNC_CANCEL_ALL);
		io_uring_sqe_set_data64(s, UD(OP_CANCEL, c->fd));
		c->ops++;
		return;
	}
	if (!c->recv_on && !c->eof && owed(c) < HIGH_WATER) {
		struct io_uring_sqe *s = sqe();
		io_uring_prep_recv(s, c->fd, NULL, BUF_SIZE, 0);
		s->flags |= IOSQE_BUFFER_SELECT;
		s->buf_group = 0;
		io_uring_sqe_set_data64(s, UD(OP_RECV, c->fd));
		c->recv_on = 1;
		c->ops++;
	}
}

static void recycle(unsigned bid)
{
	io_uring_buf_ring_add(br, bufs + (size_t)bid * BUF_SIZE, BUF_SIZE, (unsigned short)bid,
			      io_uring_buf_ring_mask(NBUFS), 0);
	io_uring_buf_ring_advance(br, 1);
}

static void on_recv(struct conn *c, int res, unsigned flags)
{
	c->recv_on = 0;
	if (res > 0 && !c->eof && !c->dead && !c->closing)
		on_data(c, bufs + (size_t)(flags >> IORING_CQE_BUFFER_SHIFT) * BUF_SIZE, (size_t)res);
	else if (res == 0)
		c->eof = 1;
	else if (res < 0 && res != -ENOBUFS && res != -ECANCELED)
		c->dead = 1; /* ECONNRESET, ...: that connection only */
	/* A completion that took a buffer gives it back, whatever its result. */
	if (flags & IORING_CQE_F_BUFFER)
		recycle(flags >> IORING_CQE_BUFFER_SHIFT);
}

static void on_send(struct conn *c, int res)
{
	if (res <= 0) {
		c->soff = c->slen = 0;
		if (res != -ECANCELED)
			c->dead = 1;
		return;
	}
	c->soff += (size_t)res;
	if (c->soff < c->slen && !c->closing) { /* partial: the rest goes now */
		struct io_uring_sqe *s = sqe();
		io_uring_prep_send(s, c->fd, c->snd + c->soff, c->slen - c->soff, MSG_NOSIGNAL);
		io_uring_sqe_set_data64(s, UD(OP_SEND, c->fd));
		c->ops++;
		return;
	}
	c->soff = c->slen = 0;
	if (c->scap > KEEP_CAP) {
		free(c->snd);
		c->snd = NULL;
		c->scap = 0;
	}
}

/* on_accept takes a connection from the multishot accept; returns 1 if
 * accepting must pause (out of descriptors). */
static int on_accept(int res)
{
	static int logged;
	if (res < 0) {
		int e = -res;
		if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
			if (!logged++)
				fprintf(stderr, "curing: accept: %s; pausing accept for %d ms (logged once)\n",
					strerror(e), ACCEPT_PAUSE_MS);
			return 1;
		}
		if (e != EINTR && e != ECONNABORTED && e != EAGAIN)
			fprintf(stderr, "curing: accept: %s\n", strerror(e));
		return 0;
	}
	int fd = res, one = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (fd >= nconns) {
		int n = nconns ? nconns : 1024;
		while (n <= fd)
			n *= 2;
		struct conn **t = realloc(conns, (size_t)n * sizeof *t);
		if (!t) {
			close(fd);
			return 0;
		}
		memset(t + nconns, 0, (size_t)(n - nconns) * sizeof *t);
		conns = t;
		nconns = n;
	}
	struct conn *c = calloc(1, sizeof *c);
	if (!c) {
		close(fd);
		return 0;
	}
	c->fd = fd;
	conns[fd] = c;
	mark(c);
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
				fprintf(stderr, "curing: -proto %s: valid values are echo, rpc\n", v);
				usage(stderr, 2);
			}
		} else if (k == 4 && !strncmp(a, "addr", k)) {
			addr = v;
		} else if (k == 9 && !strncmp(a, "max-frame", k)) {
			char *end;
			errno = 0;
			unsigned long long m = strtoull(v, &end, 10);
			if (!*v || *end || errno || m == 0 || m > 0xffffffffULL || v[0] == '-') {
				fprintf(stderr, "curing: -max-frame %s: must be 1..4294967295\n", v);
				usage(stderr, 2);
			}
			max_frame = (size_t)m;
		} else {
			fprintf(stderr, "curing: unknown flag %s\n", argv[i - (eq ? 0 : 1)]);
			usage(stderr, 2);
		}
	}
	struct sockaddr_storage sa;
	socklen_t salen;
	int loopback;
	if (parse_addr(addr, &sa, &salen, &loopback) < 0) {
		fprintf(stderr, "curing: -addr %s: want IP:PORT, e.g. 127.0.0.1:7000\n", addr);
		usage(stderr, 2);
	}
	if (!loopback && !allow_remote) {
		fprintf(stderr, "curing: -addr %s: not loopback (binding other interfaces needs -allow-remote)\n", addr);
		usage(stderr, 2);
	}

	signal(SIGPIPE, SIG_IGN);
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
		die("sigprocmask", errno);
	if ((sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0)
		die("signalfd", errno);

	struct io_uring_params p = {.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN};
	int r = io_uring_queue_init_params(RING_ENTRIES, &ring, &p);
	if (r < 0) { /* refused here: no retry will do better */
		fprintf(stderr, "curing: io_uring unavailable: io_uring_setup: %s\n", strerror(-r));
		exit(2);
	}
	size_t brsize = NBUFS * sizeof(struct io_uring_buf);
	br = mmap(NULL, brsize, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (br == MAP_FAILED)
		die("mmap", errno);
	io_uring_buf_ring_init(br);
	struct io_uring_buf_reg reg = {.ring_addr = (unsigned long)br, .ring_entries = NBUFS, .bgid = 0};
	if ((r = io_uring_register_buf_ring(&ring, &reg, 0)) < 0) {
		fprintf(stderr, "curing: io_uring unavailable: register buffer ring: %s\n", strerror(-r));
		exit(2);
	}
	if (!(bufs = malloc((size_t)NBUFS * BUF_SIZE)))
		die("malloc", ENOMEM);
	for (unsigned i = 0; i < NBUFS; i++)
		io_uring_buf_ring_add(br, bufs + (size_t)i * BUF_SIZE, BUF_SIZE, (unsigned short)i,
				      io_uring_buf_ring_mask(NBUFS), (int)i);
	io_uring_buf_ring_advance(br, NBUFS);

	lfd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (lfd < 0)
		die("socket", errno);
	if (setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
		die("setsockopt SO_REUSEADDR", errno);
	if (bind(lfd, (struct sockaddr *)&sa, salen) < 0)
		die("bind", errno);
	if (listen(lfd, BACKLOG) < 0)
		die("listen", errno);
	salen = sizeof sa;
	if (getsockname(lfd, (struct sockaddr *)&sa, &salen) < 0)
		die("getsockname", errno);

	struct io_uring_sqe *s = sqe();
	io_uring_prep_poll_add(s, sfd, POLLIN);
	io_uring_sqe_set_data64(s, UD(OP_SIGNAL, 0));
	arm_accept();
	int accepting = 1;

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

	long long paused_until = 0; /* accepting paused until then */
	for (int running = 1; running;) {
		if (paused_until) {
			long long left = paused_until - now_ms();
			struct __kernel_timespec ts = {.tv_sec = left > 0 ? left / 1000 : 0,
						       .tv_nsec = left > 0 ? (left % 1000) * 1000000 : 0};
			struct io_uring_cqe *cqe;
			r = io_uring_submit_and_wait_timeout(&ring, &cqe, 1, &ts, NULL);
		} else {
			r = io_uring_submit_and_wait(&ring, 1);
		}
		if (r < 0 && r != -EINTR && r != -ETIME && r != -EBUSY)
			die("io_uring_submit_and_wait", -r);
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		io_uring_for_each_cqe(&ring, head, cqe) {
			seen++;
			int op = (int)(cqe->user_data >> 56), fd = (int)(uint32_t)cqe->user_data;
			if (op == OP_SIGNAL) {
				running = 0;
				continue;
			}
			if (op == OP_ACCEPT) {
				if (!(cqe->flags & IORING_CQE_F_MORE))
					accepting = 0;
				if (on_accept(cqe->res) && !paused_until)
					paused_until = now_ms() + ACCEPT_PAUSE_MS;
				continue;
			}
			struct conn *c = fd < nconns ? conns[fd] : NULL;
			if (!c) {
				if (cqe->flags & IORING_CQE_F_BUFFER)
					recycle(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
				continue;
			}
			c->ops--;
			if (op == OP_RECV)
				on_recv(c, cqe->res, cqe->flags);
			else if (op == OP_SEND)
				on_send(c, cqe->res);
			mark(c);
		}
		io_uring_cq_advance(&ring, seen);
		for (int i = 0; i < ndirty; i++) {
			dirty[i]->dirty = 0;
			settle(dirty[i]);
		}
		ndirty = 0;
		if (paused_until && now_ms() >= paused_until)
			paused_until = 0;
		if (!accepting && !paused_until && running) {
			arm_accept();
			accepting = 1;
		}
	}
	/* Closing the ring cancels what is in flight; the descriptors go with the
	 * process all the same, but are closed here as cepoll closes them. */
	io_uring_queue_exit(&ring);
	for (int fd = 0; fd < nconns; fd++)
		if (conns[fd])
			release(conns[fd]);
	close(lfd);
	close(sfd);
	free(conns);
	free(dirty);
	free(scratch);
	free(bufs);
	munmap(br, brsize);
	return 0;
}

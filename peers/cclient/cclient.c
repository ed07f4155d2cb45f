//go:build ignore

/* The line above keeps the go tool from refusing a .c file in a package without
 * cgo; this file is built by cc (Makefile, and the package's test), not by go. */

/*
 * cclient: a minimal load generator in C for concbench's `echo` and `rpc` wire
 * formats (see internal/proto): the floor that loadgen's own cost per request
 * is measured against (bench's calibration).
 *
 *   cclient -addr 127.0.0.1:PORT [-proto echo|rpc] [-c 100] [-size 64]
 *           [-d 1] [-warmup 0.3] [-cpu N] [-rate R]
 *
 * It is written the way a careful C programmer writes such a client in a few
 * hundred lines: one thread, one level-triggered epoll set, N non-blocking
 * connections (TCP_NODELAY, as loadgen's), each with one request in flight —
 * send it, read its whole reply, check every byte, send the next. It does what
 * loadgen's closed loop must do for a request (write, read, verify) and nothing
 * else: no latency histogram, no /proc sampling. Those are what loadgen adds to
 * the floor, and the calibration shows how much. It reads with recv and writes
 * with send, as loadgen does: on sockets they are the cheaper calls (read(2)
 * passes through the file layer; see internal/rawio).
 *
 * -rate R makes it an open loop, paced as loadgen's -rate R -arrival fixed: the
 * j-th request of the run is due at start + j/R on connection j mod N (so each
 * connection's sends are evenly spaced and the connections evenly phased), a
 * timerfd wakes it for the next one due (timer slack 1 ns, as loadgen's), and
 * a request due while its connection still waits for a reply is sent as soon
 * as that reply is in. Without -rate it is a closed loop.
 *
 * echo: a request is -size bytes of lowercase letters, the reply the same bytes
 * uppercased. rpc: a frame of a 4-byte big-endian length and -size such bytes,
 * the reply a frame of the same length with the payload uppercased.
 *
 * After -warmup seconds of load it measures for -d seconds: the requests
 * completed, its own CPU time (getrusage: user and system) and its context
 * switches (voluntary and involuntary) over exactly that window, and prints them
 * as one JSON object on stdout. A wrong reply byte, a reset or an early EOF is
 * an error: it is counted, and the run fails (exit 1) — a floor measured against
 * a server that does not answer correctly means nothing.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define READ_BUF   (64 * 1024)
#define MAX_SIZE   (1 << 20)

struct conn {
	int fd;
	size_t woff;     /* bytes of the request written */
	size_t roff;     /* bytes of the reply read */
	int wantout;     /* registered for EPOLLOUT */
	int busy;        /* a request outstanding (open loop) */
	long parked;     /* open loop: requests due while busy, sent as replies come */
};

static int rpc;
static size_t size = 64;
static char *req, *want; /* the request and the reply expected */
static size_t reqlen;
static int ep;
static long long completed, errors;
static int open_loop;

static void usage(FILE *f)
{
	fprintf(f, "usage: cclient -addr HOST:PORT [-proto echo|rpc] [-c N] [-size N] [-d SECONDS] [-warmup SECONDS] [-cpu N] [-rate R]\n"
		"  -addr HOST:PORT  the server (IPv4)\n"
		"  -proto P         echo | rpc (default echo)\n"
		"  -c N             connections, 1..100000 (default 100)\n"
		"  -size N          payload bytes per request, 1..%d (default 64)\n"
		"  -d S             measured seconds (default 1)\n"
		"  -warmup S        seconds of load before the measurement (default 0.3)\n"
		"  -cpu N           pin to CPU N (default: not pinned)\n"
		"  -rate R          open loop at R requests/s in all, 1..10000000 (default: closed loop)\n", MAX_SIZE);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int ctl(int op, struct conn *c, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = c};
	return epoll_ctl(ep, op, c->fd, &ev);
}

/* send_req writes the rest of c's request; 0 when written or the socket is full
 * (EPOLLOUT then resumes it), -1 on an error. */
static int send_req(struct conn *c)
{
	while (c->woff < reqlen) {
		ssize_t n = send(c->fd, req + c->woff, reqlen - c->woff, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				if (!c->wantout && ctl(EPOLL_CTL_MOD, c, EPOLLIN | EPOLLOUT) == 0)
					c->wantout = 1;
				return 0;
			}
			return -1;
		}
		c->woff += (size_t)n;
	}
	if (c->wantout && ctl(EPOLL_CTL_MOD, c, EPOLLIN) == 0)
		c->wantout = 0;
	return 0;
}

/* drop counts a failed connection — a wrong byte, a reset, an EOF, a send
 * that failed — and closes it: it cannot be trusted any more. */
static void drop(struct conn *c)
{
	errors++;
	close(c->fd);
	c->fd = -1;
}

/* start_req puts a new request on c (open loop: c is free). */
static int start_req(struct conn *c)
{
	c->woff = 0;
	c->busy = 1;
	return send_req(c);
}

/* on_read reads what c's socket holds once (level-triggered: the rest is
 * reported again), checks it against the reply expected, and on a whole reply
 * counts it and sends the next request: at once in a closed loop, in an open
 * loop only if one came due meanwhile. -1 on an error or a wrong byte. */
static int on_read(struct conn *c, char *buf)
{
	ssize_t n = recv(c->fd, buf, READ_BUF, 0);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	if (n == 0 || c->roff + (size_t)n > reqlen)
		return -1; /* EOF, or more than the reply: the server is wrong */
	if (memcmp(buf, want + c->roff, (size_t)n) != 0)
		return -1;
	c->roff += (size_t)n;
	if (c->roff < reqlen)
		return 0;
	completed++;
	c->roff = 0;
	c->busy = 0;
	if (open_loop) {
		if (c->parked == 0)
			return 0;
		c->parked--;
	}
	return start_req(c);
}

static int parse_addr(const char *s, struct sockaddr_in *sa)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	if (!colon || (size_t)(colon - s) >= sizeof host)
		return -1;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = 0;
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (*end || port < 1 || port > 65535)
		return -1;
	memset(sa, 0, sizeof *sa);
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

static double parse_seconds(const char *flag, const char *v)
{
	char *end;
	double d = strtod(v, &end);
	if (*end || !(d >= 0) || d > 3600) {
		fprintf(stderr, "cclient: %s %s: want seconds, 0..3600\n", flag, v);
		exit(2);
	}
	return d;
}

static long parse_int(const char *flag, const char *v, long lo, long hi)
{
	char *end;
	long n = strtol(v, &end, 10);
	if (!*v || *end || n < lo || n > hi) {
		fprintf(stderr, "cclient: %s %s: want an integer, %ld..%ld\n", flag, v, lo, hi);
		exit(2);
	}
	return n;
}

int main(int argc, char **argv)
{
	const char *addr = NULL;
	long conns = 100, cpu = -1;
	double dur = 1, warm = 0.3, rate = 0;
	for (int i = 1; i < argc; i++) {
		const char *f = argv[i];
		if (!strcmp(f, "-h") || !strcmp(f, "-help")) {
			usage(stdout);
			return 0;
		}
		if (i + 1 >= argc) {
			fprintf(stderr, "cclient: %s needs a value\n", f);
			usage(stderr);
			return 2;
		}
		const char *v = argv[++i];
		if (!strcmp(f, "-addr"))
			addr = v;
		else if (!strcmp(f, "-proto")) {
			if (!strcmp(v, "echo"))
				rpc = 0;
			else if (!strcmp(v, "rpc"))
				rpc = 1;
			else {
				fprintf(stderr, "cclient: -proto %s: valid values are echo, rpc\n", v);
				return 2;
			}
		} else if (!strcmp(f, "-c"))
			conns = parse_int(f, v, 1, 100000);
		else if (!strcmp(f, "-size"))
			size = (size_t)parse_int(f, v, 1, MAX_SIZE);
		else if (!strcmp(f, "-d"))
			dur = parse_seconds(f, v);
		else if (!strcmp(f, "-warmup"))
			warm = parse_seconds(f, v);
		else if (!strcmp(f, "-cpu"))
			cpu = parse_int(f, v, 0, CPU_SETSIZE - 1);
		else if (!strcmp(f, "-rate"))
			rate = (double)parse_int(f, v, 1, 10000000);
		else {
			fprintf(stderr, "cclient: unknown flag %s\n", f);
			usage(stderr);
			return 2;
		}
	}
	struct sockaddr_in sa;
	if (!addr || parse_addr(addr, &sa) < 0) {
		fprintf(stderr, "cclient: -addr %s: want an IPv4 HOST:PORT\n", addr ? addr : "(missing)");
		return 2;
	}
	if (dur <= 0) {
		fprintf(stderr, "cclient: -d must be more than 0\n");
		return 2;
	}
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && (rlim_t)conns + 16 > rl.rlim_cur) {
		rl.rlim_cur = rl.rlim_max;
		if ((rlim_t)conns + 16 > rl.rlim_cur || setrlimit(RLIMIT_NOFILE, &rl) < 0) {
			fprintf(stderr, "cclient: -c %ld needs %ld descriptors; RLIMIT_NOFILE allows %llu\n",
				conns, conns + 16, (unsigned long long)rl.rlim_max);
			return 2;
		}
	}
	if (cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET((int)cpu, &set);
		if (sched_setaffinity(0, sizeof set, &set) < 0) {
			perror("cclient: sched_setaffinity");
			return 2;
		}
	}

	/* The request and the reply it must get. */
	size_t hdr = rpc ? 4 : 0;
	reqlen = hdr + size;
	req = malloc(reqlen);
	want = malloc(reqlen);
	char *buf = malloc(READ_BUF);
	struct conn *cs = calloc((size_t)conns, sizeof *cs);
	struct epoll_event *evs = calloc(MAX_EVENTS, sizeof *evs);
	if (!req || !want || !buf || !cs || !evs) {
		fprintf(stderr, "cclient: out of memory\n");
		return 1;
	}
	if (rpc) {
		unsigned char *h = (unsigned char *)req;
		h[0] = (unsigned char)(size >> 24);
		h[1] = (unsigned char)(size >> 16);
		h[2] = (unsigned char)(size >> 8);
		h[3] = (unsigned char)size;
	}
	for (size_t i = 0; i < size; i++)
		req[hdr + i] = (char)('a' + i % 26);
	memcpy(want, req, reqlen);
	for (size_t i = hdr; i < reqlen; i++)
		want[i] = (char)(want[i] - 'a' + 'A');

	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0) {
		perror("cclient: epoll_create1");
		return 1;
	}
	/* Connect one by one (blocking connects: the ramp is not measured), then
	 * make each non-blocking and send its first request. */
	for (long i = 0; i < conns; i++) {
		struct conn *c = &cs[i];
		c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
			fprintf(stderr, "cclient: connection %ld of %ld to %s: %s\n", i + 1, conns, addr, strerror(errno));
			return 1;
		}
		int one = 1;
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) < 0 || ctl(EPOLL_CTL_ADD, c, EPOLLIN) < 0) {
			perror("cclient: fcntl/epoll_ctl");
			return 1;
		}
	}
	/* Open loop: the timerfd, registered edge-triggered with a null pointer,
	 * wakes the loop for the next request due. Each timerfd_settime starts
	 * its count afresh, so each expiry is a new edge: nothing to read (as
	 * loadgen's loop). */
	open_loop = rate > 0;
	int tfd = -1;
	if (open_loop) {
		prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
		tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
		struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = NULL};
		if (tfd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev) < 0) {
			perror("cclient: timerfd");
			return 1;
		}
	}
	for (long i = 0; i < conns && !open_loop; i++)
		if (start_req(&cs[i]) < 0) {
			fprintf(stderr, "cclient: sending the first request: %s\n", strerror(errno));
			return 1;
		}

	/* Warm up, then measure exactly the window: the counts, the CPU time and
	 * the switches are read at its two edges. */
	double start = now(), t0 = 0, t1 = 0;
	long long n0 = 0, n1 = 0, sent = 0, armed = -1; /* open loop: requests due so far, and the one the timer is set for */
	struct rusage r0, r1;
	int measuring = 0;
	for (;;) {
		double t = now();
		if (open_loop) {
			/* Every request due by now goes out, or waits for its connection's
			 * reply; then the timer is set for the next. */
			long long due = (long long)((t - start) * rate) + 1;
			for (; sent < due; sent++) {
				struct conn *c = &cs[sent % conns];
				if (c->fd < 0)
					continue;
				if (c->busy)
					c->parked++;
				else if (start_req(c) < 0)
					drop(c);
			}
			/* Armed once for each request next due (as loadgen's loop
			 * re-arms only for a new deadline), and again after it fired. */
			if (sent != armed) {
				armed = sent;
				double next = start + (double)sent / rate - now();
				if (next < 1e-9)
					next = 1e-9;
				struct itimerspec its = {0};
				its.it_value.tv_sec = (time_t)next;
				its.it_value.tv_nsec = (long)((next - (double)its.it_value.tv_sec) * 1e9);
				if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
					its.it_value.tv_nsec = 1;
				timerfd_settime(tfd, 0, &its, NULL);
			}
		}
		if (!measuring && t - start >= warm) {
			getrusage(RUSAGE_SELF, &r0);
			t0 = now();
			n0 = completed;
			measuring = 1;
		}
		if (measuring && t - t0 >= dur) {
			n1 = completed;
			t1 = now();
			getrusage(RUSAGE_SELF, &r1);
			break;
		}
		int n = epoll_wait(ep, evs, MAX_EVENTS, 10);
		if (n < 0 && errno != EINTR) {
			perror("cclient: epoll_wait");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (!c) { /* the timer: the next pass sends what is due */
				armed = -1;
				continue;
			}
			if (c->fd < 0)
				continue;
			int bad = 0;
			if (evs[i].events & EPOLLOUT)
				bad = send_req(c) < 0;
			if (!bad && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
				bad = on_read(c, buf) < 0;
			if (bad)
				drop(c);
		}
	}
	double user = (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) * 1e6 + (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec);
	double sys = (double)(r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) * 1e6 + (double)(r1.ru_stime.tv_usec - r0.ru_stime.tv_usec);
	printf("{\"proto\":\"%s\",\"conns\":%ld,\"size\":%zu,\"rate\":%.0f,\"requests\":%lld,\"seconds\":%.6f,"
	       "\"user_us\":%.0f,\"system_us\":%.0f,\"voluntary\":%ld,\"involuntary\":%ld,\"errors\":%lld}\n",
	       rpc ? "rpc" : "echo", conns, size, rate, n1 - n0, t1 - t0, user, sys,
	       r1.ru_nvcsw - r0.ru_nvcsw, r1.ru_nivcsw - r0.ru_nivcsw, errors);
	if (errors > 0) {
		fprintf(stderr, "cclient: %lld connections failed (a wrong reply, a reset or an early EOF)\n", errors);
		return 1;
	}
	return 0;
}

package bench

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"concbench/internal/cpuset"
	"concbench/internal/procstat"
	"concbench/internal/result"
	"concbench/internal/testfiles"
)

// The nginx configuration bench renders from peers/nginx/nginx.conf.tmpl, against
// the example beside the template (the README explains it line by line): `go test
// ./bench -update` rewrites the example.
func TestNginxConfig(t *testing.T) {
	c := NginxConfig{Listen: "127.0.0.1:8080", Root: "/tmp/concbench-files", Prefix: "/path/to/run/peers/nginx",
		WorkerConnections: 1128, RlimitNofile: 2320}
	got := c.Render()
	for _, want := range []string{
		"daemon off;\n", "master_process on;\n", "worker_processes 1;\n", "worker_rlimit_nofile 2320;\n",
		"pid /path/to/run/peers/nginx/nginx.pid;\n", "error_log /path/to/run/peers/nginx/error.log warn;\n",
		"worker_connections 1128;\n", "access_log off;\n", "sendfile on;\n", "tcp_nopush on;\n", "keepalive_requests 10000000;\n",
		"keepalive_timeout 65s;\n", "listen 127.0.0.1:8080 backlog=4096;\n", "root /tmp/concbench-files;\n",
		"client_body_temp_path /path/to/run/peers/nginx/tmp/body;\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("config lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "user ") {
		t.Errorf("no User: the config must leave nginx's default user:\n%s", got)
	}
	c.User = "root"
	if !strings.Contains(c.Render(), "\nuser root;\n") {
		t.Errorf("User root: no user line:\n%s", c.Render())
	}

	c.User = ""
	example := filepath.Join("..", "peers", "nginx", "nginx.conf")
	if *update {
		if err := os.WriteFile(example, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("%s differs from what bench renders (go test ./bench -update rewrites it after review):\n%s", example, firstDiff(got, string(want)))
	}
}

// A peer that is not installed skips its cells with the reason (every trial
// would fail the same way), as does one that does not speak a cell's
// protocol, and the matrix goes on: nothing is run.
func TestPeerNotInstalled(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no nginx on PATH …
	old := nginxFallback
	nginxFallback = filepath.Join(t.TempDir(), "sbin", "nginx") // … nor at the fallback
	defer func() { nginxFallback = old }()

	dir := t.TempDir()
	sp := Spec{Models: []string{"peer:nginx", "peer:cepoll"}, Conns: []int{2}, Protos: []string{"echo", "http"}, Works: []string{"none"},
		Reconnect: "off", Repeat: 1, Duration: time.Second, Size: 16, Path: "/index.html"}
	store := Store{Dir: dir}
	// cepoll is looked for beside loadgen: neither exists.
	r := &Runner{Spec: sp, Store: store, Loadgen: filepath.Join(t.TempDir(), "loadgen")}
	n, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n.Failed != 0 || n.Skipped != 4 || n.OK != 0 {
		t.Errorf("counts %+v, want 4 skipped (2 not installed, 2 do not speak)", n)
	}
	want := map[string]struct{ status, reason string }{
		"echo/c2/peer:nginx/rep1":  {StatusSkipped, "peer:nginx does not speak echo"},
		"echo/c2/peer:cepoll/rep1": {StatusSkipped, "peer:cepoll: peer not installed: no cepoll at "},
		"http/c2/peer:nginx/rep1":  {StatusSkipped, "peer:nginx: peer not installed: nginx is not on PATH nor at "},
		"http/c2/peer:cepoll/rep1": {StatusSkipped, "peer:cepoll does not speak http"},
	}
	for _, tr := range sp.Plan() {
		rec, err := store.ReadRecord(tr)
		if err != nil {
			t.Fatal(err)
		}
		w := want[tr.Key()]
		if rec.Status != w.status || !strings.HasPrefix(rec.Reason, w.reason) {
			t.Errorf("%s: %s %q, want %s %q…", tr.Key(), rec.Status, rec.Reason, w.status, w.reason)
		}
		if rec.Status == StatusFailed && rec.Failure != FailPeer {
			t.Errorf("%s: failure %q, want %q", tr.Key(), rec.Failure, FailPeer)
		}
	}
	d, err := store.Load()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WriteAll(d, dir, filepath.Join(dir, "plots")); err != nil {
		t.Fatalf("WriteAll: %v", err)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "REPORT.md"))
	if !strings.Contains(string(md), "peer:nginx http c=2: rep 1 skipped: peer:nginx: peer not installed") {
		t.Errorf("REPORT.md does not say nginx is not installed:\n%s", md)
	}
}

// cc builds peers/cepoll/cepoll.c into a temporary directory, as its own test
// does; the test is skipped without a C compiler.
func buildCepoll(t *testing.T) string {
	t.Helper()
	cc := os.Getenv("CC")
	for _, c := range []string{"cc", "gcc", "clang"} {
		if cc != "" {
			break
		}
		if _, err := exec.LookPath(c); err == nil {
			cc = c
		}
	}
	if cc == "" {
		t.Skip("no C compiler ($CC, cc, gcc, clang): cannot build cepoll.c")
	}
	bin := filepath.Join(t.TempDir(), "cepoll")
	if out, err := exec.Command(cc, "-O2", "-o", bin, filepath.Join("..", "peers", "cepoll", "cepoll.c")).CombinedOutput(); err != nil {
		t.Fatalf("%s cepoll.c: %v\n%s", cc, err, out)
	}
	return bin
}

// running lists the live (non-zombie) processes whose executable is exe.
func running(exe string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err != nil || p != exe {
			continue
		}
		if !gone(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// gone reports whether pid has ended: no such process, or a zombie waiting for
// its (new) parent to reap it.
func gone(pid int) bool {
	s, ok := stat(pid)
	return !ok || s.State == 'Z' || s.State == 'X'
}

// stat reads /proc/PID/stat; false when there is no such process.
func stat(pid int) (procstat.Stat, bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procstat.Stat{}, false
	}
	s, err := procstat.ParseStat(b)
	return s, err == nil
}

func testCPUs(t *testing.T) (server, client []int) {
	avail, err := cpuset.Available()
	if err != nil {
		t.Fatal(err)
	}
	if len(avail) < 2 {
		t.Skip("one CPU: no disjoint server and client sets")
	}
	server, client, _ = cpuset.Split(avail)
	return server, client
}

// Start, wait, pin and stop, with cepoll: it answers echo, runs on the server's
// CPUs, and SIGTERM ends it cleanly with nothing left behind.
func TestPeerStartStopCepoll(t *testing.T) {
	bin := buildCepoll(t)
	serverCPUs, _ := testCPUs(t)
	r := &Runner{Store: Store{Dir: t.TempDir()}, Peers: PeerOptions{Cepoll: bin, Grace: 5 * time.Second}}
	tr := Trial{Cell: Cell{Model: "peer:cepoll", Proto: "echo", Work: "none", Conns: 1}, Rep: 1}
	p, run, err := r.startPeer(context.Background(), tr, serverCPUs)
	if err != nil {
		t.Fatalf("startPeer: %v (%+v)", err, run)
	}
	if !slices.Equal(run.CPUs, serverCPUs) {
		t.Errorf("cepoll runs on CPUs %v, want %v", run.CPUs, serverCPUs)
	}
	if run.PID != p.PID() || !strings.HasPrefix(run.Addr, "127.0.0.1:") || !slices.Equal(run.Args, []string{"-proto", "echo", "-addr", "127.0.0.1:0"}) {
		t.Errorf("run %+v", run)
	}
	c, err := net.Dial("tcp", run.Addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("hello"))
	c.(*net.TCPConn).CloseWrite()
	if got, err := io.ReadAll(c); err != nil || string(got) != "HELLO" {
		t.Errorf("echo: %q, %v", got, err)
	}
	c.Close()
	e := p.Stop(r.grace())
	if !e.Clean || e.Code != 0 {
		t.Errorf("stop: %+v, want a clean exit", e)
	}
	if !gone(run.PID) || len(running(bin)) > 0 {
		t.Errorf("cepoll still running after stop: %v", running(bin))
	}
	if again := p.Stop(r.grace()); again.Clean {
		t.Errorf("a second stop of an exited peer: %+v, want not clean", again)
	}
}

// The failure paths of a peer's start: a bad first line, an exit before
// listening, an address that does not accept. (A peer that ignores SIGTERM or
// leaves a child behind is supervise's TestStop.)
func TestPeerStartFailures(t *testing.T) {
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tr := Trial{Cell: Cell{Model: "peer:cepoll", Proto: "echo", Work: "none", Conns: 1}, Rep: 1}
	for _, tt := range []struct{ name, body, want string }{
		{"badline", "echo hello; sleep 30", `its first line "hello" is not "listening on HOST:PORT"`},
		{"exits", "echo oops >&2; exit 3", "exited before listening (exit status 3)"},
		{"deaf", "echo 'listening on 127.0.0.1:1'; sleep 30", "not accepting connections on 127.0.0.1:1"},
	} {
		t0 := time.Now()
		r := &Runner{Store: Store{Dir: dir}, Peers: PeerOptions{Cepoll: script(tt.name, tt.body), Grace: time.Second, StartTimeout: 500 * time.Millisecond}}
		_, run, err := r.startPeer(context.Background(), tr, nil)
		t.Logf("%s: failed in %v", tt.name, time.Since(t0))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err %v, want %q", tt.name, err, tt.want)
			continue
		}
		if run == nil || run.Exit == nil || !gone(run.PID) {
			t.Errorf("%s: not stopped after a failed start: %+v", tt.name, run)
		}
		if tt.name == "exits" && !strings.Contains(run.Output, "oops") {
			t.Errorf("%s: output %q lacks its stderr", tt.name, run.Output)
		}
	}
}

// buildTools builds loadgen and the server into a temporary directory; it skips
// the test when loadgen lacks a flag the test needs.
func buildTools(t *testing.T, flags ...string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs loadgen and the server")
	}
	bin := t.TempDir()
	for _, c := range []string{"loadgen", "server"} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(bin, c), "concbench/cmd/"+c).CombinedOutput(); err != nil {
			t.Skipf("cannot build %s: %v\n%s", c, err, out)
		}
	}
	help, _ := exec.Command(filepath.Join(bin, "loadgen"), "-h").CombinedOutput()
	for _, f := range flags {
		if !strings.Contains(string(help), "-"+f) {
			t.Skipf("loadgen has no -%s flag yet", f)
		}
	}
	return bin
}

// A run with a model and the C peer through the real loadgen: both measured, the
// peer sampled as an external server on the server's CPUs and stopped cleanly;
// then a run interrupted during a peer trial leaves no peer behind.
func TestRunnerPeerCepoll(t *testing.T) {
	cepoll := buildCepoll(t)
	bin := buildTools(t, "server-pid")
	serverCPUs, clientCPUs := testCPUs(t)
	dir := t.TempDir()
	sp := Spec{Models: []string{"epoll-et", "peer:cepoll"}, Conns: []int{4}, Protos: []string{"echo"}, Works: []string{"none"},
		Reconnect: "off", Repeat: 1, Duration: 500 * time.Millisecond, Warmup: 100 * time.Millisecond, Size: 16}
	store := Store{Dir: dir}
	r := &Runner{Spec: sp, Store: store, Loadgen: filepath.Join(bin, "loadgen"), Peers: PeerOptions{Cepoll: cepoll}}
	n, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n.OK != 2 {
		for _, tr := range sp.Plan() {
			rec, _ := store.ReadRecord(tr)
			t.Logf("%s: %s %s %s\n%s", tr.Key(), rec.Status, rec.Failure, rec.Reason, rec.Stderr)
		}
		t.Fatalf("counts %+v, want 2 ok", n)
	}
	pt := sp.Plan()[1]
	rec, err := store.ReadRecord(pt)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Peer == nil || rec.Peer.Exit == nil || !rec.Peer.Exit.Clean || !slices.Equal(rec.Peer.CPUs, serverCPUs) {
		t.Errorf("peer record %+v", rec.Peer)
	}
	res, err := result.ReadFile(filepath.Join(dir, rec.Result))
	if err != nil {
		t.Fatal(err)
	}
	// Not its CPU: /proc counts in 10 ms ticks, and half a second of 4 connections
	// on a busy machine may not cross one.
	if res.Server == nil || !res.Server.External || res.Server.PID != rec.Peer.PID || res.Server.RSSMaxBytes <= 0 || len(res.Server.Samples) == 0 {
		t.Errorf("the peer was not sampled as an external server: %+v", res.Server)
	}
	if !slices.Equal(res.Config.ServerCPUs, serverCPUs) || !slices.Equal(res.Config.ClientCPUs, clientCPUs) || res.Load.Requests == 0 {
		t.Errorf("peer result: server CPUs %v, client CPUs %v, %d requests", res.Config.ServerCPUs, res.Config.ClientCPUs, res.Load.Requests)
	}
	if left := running(cepoll); len(left) > 0 {
		t.Errorf("cepoll processes left after the run: %v", left)
	}

	// Interrupted 700 ms into a 5 s peer trial: discarded, the peer stopped.
	sp2 := sp
	sp2.Models, sp2.Duration = []string{"peer:cepoll"}, 5*time.Second
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	time.AfterFunc(700*time.Millisecond, cancel)
	r2 := &Runner{Spec: sp2, Store: Store{Dir: t.TempDir()}, Loadgen: r.Loadgen, Peers: r.Peers}
	start := time.Now()
	if _, err := r2.Run(ctx); !errors.Is(err, ErrInterrupted) {
		t.Errorf("interrupted run: err = %v, want ErrInterrupted", err)
	}
	if el := time.Since(start); el > 5*time.Second { // uninterrupted, it lasts 5.1 s and more
		t.Errorf("the interrupted run took %v", el)
	}
	if left := running(cepoll); len(left) > 0 {
		t.Errorf("cepoll processes left after an interruption: %v", left)
	}
}

// nginxBin is the nginx the peer would use, or skips the test.
func nginxBin(t *testing.T) string {
	t.Helper()
	bin, err := findNginx(PeerOptions{}, "")
	if err != nil {
		t.Skipf("nginx not installed (make deps installs it): %v", err)
	}
	return bin
}

// nginx with the configuration bench writes: it serves the standard files over
// keep-alive, master and worker run on the server's CPUs, and SIGTERM ends both.
func TestPeerStartStopNginx(t *testing.T) {
	bin := nginxBin(t)
	serverCPUs, _ := testCPUs(t)
	root := filepath.Join(t.TempDir(), "files")
	dir := t.TempDir()
	r := &Runner{Store: Store{Dir: dir}, Peers: PeerOptions{Nginx: bin, Root: root, Grace: 5 * time.Second}}
	tr := Trial{Cell: Cell{Model: "peer:nginx", Proto: "http", Work: "none", Conns: 10}, Rep: 1}
	p, run, err := r.startPeer(context.Background(), tr, serverCPUs)
	if err != nil {
		t.Fatalf("startPeer: %v (%+v)", err, run)
	}
	defer p.Stop(time.Second)
	if run.Config != filepath.Join("peers", "nginx", "nginx.conf") || !strings.HasPrefix(run.Version, "nginx/") {
		t.Errorf("run %+v", run)
	}
	conf, _ := os.ReadFile(filepath.Join(dir, run.Config))
	if abs, _ := filepath.Abs(root); !strings.Contains(string(conf), "root "+abs+";") || !strings.Contains(string(conf), "listen "+run.Addr+" ") {
		t.Errorf("config:\n%s", conf)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	for _, f := range []string{"index.html", "64k.bin", "index.html"} { // the same connection throughout
		resp, err := client.Get("http://" + run.Addr + "/" + f)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		want, _ := testfiles.Content(f)
		if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, want) {
			t.Errorf("GET /%s: %d, %d bytes, %v; want 200 and the standard file", f, resp.StatusCode, len(body), err)
		}
	}
	workers := children(p.PID())
	if len(workers) != 1 {
		t.Errorf("nginx master %d has children %v, want one worker", p.PID(), workers)
	}
	for _, pid := range append(workers, p.PID()) {
		if got, err := cpuset.Allowed(pid); err != nil || !slices.Equal(got, serverCPUs) {
			t.Errorf("nginx pid %d on CPUs %v (%v), want %v", pid, got, err, serverCPUs)
		}
	}
	if e := p.Stop(r.grace()); !e.Clean {
		t.Errorf("stop: %+v, want clean", e)
	}
	for _, pid := range append(workers, p.PID()) {
		if !gone(pid) {
			t.Errorf("nginx pid %d still running", pid)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "peers", "nginx", "error.log")); err != nil {
		t.Errorf("no error log in the run directory: %v", err)
	}
}

// children lists the processes whose parent is pid.
func children(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if s, ok := stat(c); ok && s.PPID == pid {
			out = append(out, c)
		}
	}
	return out
}

// One http cell against nginx through the real loadgen, beside a model.
func TestRunnerPeerNginx(t *testing.T) {
	nginx := nginxBin(t)
	bin := buildTools(t, "server-pid", "path")
	testCPUs(t)
	dir := t.TempDir()
	sp := Spec{Models: []string{"epoll-et", "peer:nginx"}, Conns: []int{4}, Protos: []string{"http"}, Path: "/index.html", Works: []string{"none"},
		Reconnect: "off", Repeat: 1, Duration: 500 * time.Millisecond, Warmup: 100 * time.Millisecond, Size: 64}
	store := Store{Dir: dir}
	r := &Runner{Spec: sp, Store: store, Loadgen: filepath.Join(bin, "loadgen"), Peers: PeerOptions{Nginx: nginx}}
	n, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range sp.Plan() {
		rec, _ := store.ReadRecord(tr)
		if rec.Status != StatusOK {
			t.Errorf("%s: %s %s %s\n%s", tr.Key(), rec.Status, rec.Failure, rec.Reason, rec.Stderr)
		}
	}
	if n.OK != 2 {
		t.Fatalf("counts %+v, want 2 ok", n)
	}
	rec, _ := store.ReadRecord(sp.Plan()[1])
	if rec.Peer == nil || rec.Peer.Exit == nil || !rec.Peer.Exit.Clean || !gone(rec.Peer.PID) {
		t.Errorf("nginx record %+v", rec.Peer)
	}
}

package main

import (
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"concbench/internal/testfiles"
	"concbench/models"
)

// TestRealHTTPClients: the http protocol of every model works with the clients
// people use — curl (keep-alive across two requests), wrk (20 connections for a
// second: no socket error, no non-2xx) and ab (HTTP/1.0 with keep-alive, 500
// requests: none failed) — each skipped when not installed (`make deps` installs
// them; the CI machine has none). The server runs without -root, so it serves
// the generated standard files.
func TestRealHTTPClients(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts every model")
	}
	tools := map[string]bool{}
	for _, tool := range []string{"curl", "wrk", "ab"} {
		_, err := exec.LookPath(tool)
		tools[tool] = err == nil
	}
	if !tools["curl"] && !tools["wrk"] && !tools["ab"] {
		t.Skip("none of curl, wrk, ab installed (make deps)")
	}
	// One slot for the whole test: its models run one after another, so that
	// wrk's 20 connections a second and ab's 500 requests do not compete with
	// each other for the CPUs.
	parallelServer(t)
	bin := build(t)
	index, _ := testfiles.Lookup("index.html")
	for _, model := range models.Names() {
		t.Run(model, func(t *testing.T) {
			args := []string{"-proto", "http"}
			if model == "procpool" {
				// A blocking pool serves one connection per worker: wrk's 20
				// keep-alive connections need 20 workers, or 18 of them time out.
				args = append(args, "-workers", "24")
			}
			srv := startBinary(t, bin, model, args...)
			defer srv.stop(t)
			url := "http://" + srv.addr + "/index.html"
			if tools["curl"] {
				out := runTool(t, "curl", "-sS", "-o", "/dev/null", "-o", "/dev/null",
					"-w", "%{http_code} %{size_download} %{num_connects}\n", url, url)
				want := "200 " + strconv.FormatInt(index.Size, 10)
				lines := strings.Split(strings.TrimSpace(out), "\n")
				if len(lines) != 2 || !strings.HasPrefix(lines[0], want+" 1") || !strings.HasPrefix(lines[1], want+" 0") {
					t.Errorf("curl: %q, want two %q, the second on the kept connection (0 new connects)", out, want)
				}
			}
			if tools["wrk"] {
				out := runTool(t, "wrk", "-t1", "-c20", "-d1s", url)
				if strings.Contains(out, "Non-2xx") || strings.Contains(out, "Socket errors") {
					t.Errorf("wrk reported errors:\n%s", out)
				}
				if m := regexp.MustCompile(`(\d+) requests in`).FindStringSubmatch(out); m == nil || m[1] == "0" {
					t.Errorf("wrk made no requests:\n%s", out)
				}
			}
			if tools["ab"] {
				out := runTool(t, "ab", "-q", "-k", "-n", "500", "-c", "10", url)
				for _, want := range []string{"Complete requests:      500", "Failed requests:        0", "Keep-Alive requests:    500"} {
					if !strings.Contains(out, want) {
						t.Errorf("ab: no %q in:\n%s", want, out)
					}
				}
				if strings.Contains(out, "Non-2xx") {
					t.Errorf("ab reported non-2xx responses:\n%s", out)
				}
			}
		})
	}
}

// runTool runs a client tool and returns its output; a failure to run fails the test.
func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

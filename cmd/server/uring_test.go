package main

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"concbench/internal/cbuild"
)

// Where io_uring is refused — here by a seccomp filter, as container runtimes
// refuse it — the uring models fail at start, before they listen, with the
// kernel's reason and exit status 2 (a usage-class failure: no retry will
// do better). The other models do not care.
func TestUringRefused(t *testing.T) {
	t.Parallel() // no server is left running: each start exits at once
	bin := build(t)
	nouring := cbuild.Build(t, "testdata/nouring.c")
	for _, model := range []string{"uring", "uring-sqpoll"} {
		t.Run(model, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(nouring, bin, "-model", model, "-addr", "127.0.0.1:0")
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 2 {
				t.Fatalf("%v, want exit status 2; stderr: %s", err, stderr.String())
			}
			for _, want := range []string{"io_uring unavailable", "io_uring_setup", "operation not permitted"} {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr %q does not say %q", stderr.String(), want)
				}
			}
			if strings.Contains(stdout.String(), "listening on") {
				t.Errorf("it listened before failing: %q", stdout.String())
			}
		})
	}
}

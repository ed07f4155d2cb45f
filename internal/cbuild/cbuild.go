// Package cbuild compiles the project's single-file C programs (peers/cepoll,
// peers/cclient, peers/curing, peers/clibevent) for their tests, with the flags
// the Makefile uses plus -Werror: a warning is a failure there.
package cbuild

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Lib is a C library a program links with: its name for -l, a header that
// shows it is installed, and the Debian package that installs it.
type Lib struct {
	Name, Header, Package string
}

// The libraries the peers use.
var (
	Liburing  = Lib{Name: "uring", Header: "liburing.h", Package: "liburing-dev"}
	Libevent  = Lib{Name: "event", Header: "event2/event.h", Package: "libevent-dev"}
	allowSkip = os.Getenv("CONCBENCH_REQUIRE_PEERS") == ""
)

// Build compiles the C file src (relative to the test's directory) with $CC,
// else the first of cc, gcc and clang found, linked with libs, into
// t.TempDir(), and returns the executable's path. It skips the test when there
// is no C compiler, or when a library's header is not installed (saying which
// package installs it) — unless CONCBENCH_REQUIRE_PEERS is set, as CI sets it
// after installing them: then a missing library fails the test.
func Build(t testing.TB, src string, libs ...Lib) string {
	t.Helper()
	cc := compiler()
	if cc == "" {
		t.Skipf("no C compiler found ($CC, cc, gcc, clang): cannot build %s", src)
	}
	for _, l := range libs {
		if !HasHeader(cc, l.Header) {
			if allowSkip {
				t.Skipf("<%s> not found: %s is not installed (make deps installs it); %s not built", l.Header, l.Package, src)
			}
			t.Fatalf("<%s> not found: %s is not installed, and CONCBENCH_REQUIRE_PEERS is set", l.Header, l.Package)
		}
	}
	bin := filepath.Join(t.TempDir(), strings.TrimSuffix(filepath.Base(src), ".c"))
	args := []string{"-O2", "-Wall", "-Wextra", "-Werror", "-o", bin, src}
	for _, l := range libs {
		args = append(args, "-l"+l.Name)
	}
	if out, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", cc, strings.Join(args, " "), err, out)
	}
	return bin
}

// compiler is $CC, else the first of cc, gcc and clang on PATH, else "".
func compiler() string {
	if cc := os.Getenv("CC"); cc != "" {
		return cc
	}
	for _, c := range []string{"cc", "gcc", "clang"} {
		if _, err := exec.LookPath(c); err == nil {
			return c
		}
	}
	return ""
}

// HasHeader reports whether the C compiler cc finds header on its include path.
func HasHeader(cc, header string) bool {
	cmd := exec.Command(cc, "-E", "-x", "c", "-o", os.DevNull, "-")
	cmd.Stdin = strings.NewReader("#include <" + header + ">\n")
	return cmd.Run() == nil
}

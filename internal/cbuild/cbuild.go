// Package cbuild compiles the project's single-file C programs (peers/cepoll,
// peers/cclient) for their tests, with the flags the Makefile uses plus
// -Werror: a warning is a failure there.
package cbuild

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Build compiles the C file src (in the test's directory) with $CC, else the
// first of cc, gcc and clang found, into t.TempDir(), and returns the
// executable's path. It skips the test when there is no C compiler.
func Build(t testing.TB, src string) string {
	t.Helper()
	cc := os.Getenv("CC")
	if cc == "" {
		for _, c := range []string{"cc", "gcc", "clang"} {
			if _, err := exec.LookPath(c); err == nil {
				cc = c
				break
			}
		}
	}
	if cc == "" {
		t.Skipf("no C compiler found ($CC, cc, gcc, clang): cannot build %s", src)
	}
	bin := filepath.Join(t.TempDir(), strings.TrimSuffix(filepath.Base(src), ".c"))
	if out, err := exec.Command(cc, "-O2", "-Wall", "-Wextra", "-Werror", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", cc, src, err, out)
	}
	return bin
}

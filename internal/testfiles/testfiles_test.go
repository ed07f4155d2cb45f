package testfiles

import (
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
)

func TestGenerate(t *testing.T) {
	dir := t.TempDir()
	// A stale, wrong-sized file is replaced; a foreign file is left alone.
	if err := os.WriteFile(filepath.Join(dir, "1k.bin"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "mine.txt"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second pass finds everything in place
		if err := Generate(dir); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range Std {
		b, err := os.ReadFile(filepath.Join(dir, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		s, ok := Lookup("/" + f.Name)
		if !ok || int64(len(b)) != f.Size || s.Size != f.Size || crc32.Checksum(b, Table) != s.CRC {
			t.Errorf("%s: %d bytes, lookup %+v %v", f.Name, len(b), s, ok)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "mine.txt")); string(b) != "keep" {
		t.Error("a foreign file was touched")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != len(Std)+1 {
		t.Errorf("%d entries, want %d (no temporary files left)", len(entries), len(Std)+1)
	}
	if _, ok := Lookup("nope.bin"); ok {
		t.Error("Lookup found a file that is not standard")
	}
	a, _ := Content("1m.bin")
	b, _ := Content("64k.bin")
	if string(a[:64]) == string(b[:64]) {
		t.Error("different names gave the same content")
	}
}

// TestOpenUnder: the files opened below a directory are counted, the directory
// itself and files elsewhere are not, and a closed one is gone from the count.
func TestOpenUnder(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	count := func() int {
		t.Helper()
		n, err := OpenUnder(dir)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	base := count()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var files []*os.File
	for _, p := range []string{filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(other, "c")} {
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if n := count(); n != base+2 {
		t.Errorf("%d open below the directory, want %d", n, base+2)
	}
	files[0].Close()
	if n := count(); n != base+1 {
		t.Errorf("%d open after a close, want %d", n, base+1)
	}
	for _, f := range files[1:] {
		f.Close()
	}
	if _, err := OpenUnder(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing directory: no error")
	}
}

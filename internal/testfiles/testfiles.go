// Package testfiles makes the files the file and http protocols serve by default:
// a small set of names whose content is a pure function of the name, so a client
// can verify every byte it downloads (by checksum) without a copy of the files.
// The server generates them into DefaultDir when no -root is given; tests generate
// them into a temporary directory; loadgen knows their sizes and checksums.
package testfiles

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// File is one standard test file.
type File struct {
	Name string
	Size int64
}

// Std is the standard set: a small HTML page and binary files of growing size.
var Std = []File{
	{"index.html", int64(len(indexHTML))},
	{"1k.bin", 1 << 10},
	{"16k.bin", 16 << 10},
	{"64k.bin", 64 << 10},
	{"1m.bin", 1 << 20},
}

const indexHTML = `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>concbench</title></head>
<body>
<h1>concbench</h1>
<p>This page is served by one of concbench's server models. Its content never
changes, so a load generator can check every byte of every response.</p>
<ul>
<li><a href="/1k.bin">1k.bin</a></li>
<li><a href="/16k.bin">16k.bin</a></li>
<li><a href="/64k.bin">64k.bin</a></li>
<li><a href="/1m.bin">1m.bin</a></li>
</ul>
</body>
</html>
`

// Table is crc32's Castagnoli table: the checksum loadgen computes over bodies
// (hardware-accelerated on amd64 and arm64).
var Table = crc32.MakeTable(crc32.Castagnoli)

// Content returns the bytes of the standard file name, or false if there is none.
func Content(name string) ([]byte, bool) {
	for _, f := range Std {
		if f.Name == name {
			return content(f), true
		}
	}
	return nil, false
}

// Sum is a standard file's size and checksum (crc32 with Table).
type Sum struct {
	Size int64
	CRC  uint32
}

var sums = sync.OnceValue(func() map[string]Sum {
	m := make(map[string]Sum, len(Std))
	for _, f := range Std {
		m[f.Name] = Sum{Size: f.Size, CRC: crc32.Checksum(content(f), Table)}
	}
	return m
})

// Lookup returns the size and checksum of the standard file name.
func Lookup(name string) (Sum, bool) {
	s, ok := sums()[strings.TrimPrefix(name, "/")]
	return s, ok
}

// content generates f's bytes: the HTML page, or an xorshift64 stream seeded by
// the FNV-1a hash of the name.
func content(f File) []byte {
	if f.Name == "index.html" {
		return []byte(indexHTML)
	}
	h := fnv.New64a()
	h.Write([]byte(f.Name))
	x := h.Sum64() | 1
	b := make([]byte, f.Size)
	for i := 0; i < len(b); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		for j := 0; j < 8 && i+j < len(b); j++ {
			b[i+j] = byte(x >> (8 * j))
		}
	}
	return b
}

// DefaultDir is where the server keeps the standard files when given no root.
func DefaultDir() string { return filepath.Join(os.TempDir(), "concbench-files") }

// Generate makes dir hold the standard files: it creates dir if needed and writes
// each file that is missing or differs, atomically (a temporary file renamed into
// place), so concurrent generators and readers never see a partial file. Other
// files in dir are left alone.
func Generate(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range Std {
		want := content(f)
		path := filepath.Join(dir, f.Name)
		if have, err := os.ReadFile(path); err == nil && bytes.Equal(have, want) {
			continue
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		tmp, err := os.CreateTemp(dir, "."+f.Name+".*")
		if err != nil {
			return err
		}
		_, werr := tmp.Write(want)
		cerr := tmp.Close()
		if err := errors.Join(werr, cerr); err != nil {
			os.Remove(tmp.Name())
			return fmt.Errorf("writing %s: %w", path, err)
		}
		if err := os.Chmod(tmp.Name(), 0o644); err != nil {
			os.Remove(tmp.Name())
			return err
		}
		if err := os.Rename(tmp.Name(), path); err != nil {
			os.Remove(tmp.Name())
			return err
		}
	}
	return nil
}

// OpenUnder counts this process's descriptors open on files below dir (dir
// itself, which a server's os.Root holds, not counted), from /proc/self/fd:
// the files a server holds, for tests of leaks. Counted by what each
// descriptor names, it stays exact while the runtime, a finalizer or another
// test opens or closes other descriptors meanwhile.
func OpenUnder(dir string) (int, error) {
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return 0, err
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		// A descriptor closed since the listing is simply not counted.
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(target, dir+"/") {
			n++
		}
	}
	return n, nil
}

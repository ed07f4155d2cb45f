package proto

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestOutputCap: a client that pipelines requests for replies it does not read
// is stopped at the output cap (bytes in memory, or open files), for both file
// protocols, and the replies before the cap are kept.
func TestOutputCap(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "small"), bytes.Repeat([]byte("s"), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "big"), bytes.Repeat([]byte("b"), InlineMax+1), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		proto, file string
		maxOut      int
		req         func(name string) []byte
		wantServed  int // requests answered before the cap
	}{
		{"http", "small", 4000, httpGet, 4}, // ~1.15 KiB a reply: the 5th finds > 4000 owed
		{"file", "small", 4000, fileReq, 4},
		{"http", "big", 1 << 20, httpGet, MaxOutFiles},
		{"file", "big", 1 << 20, fileReq, MaxOutFiles},
	}
	for _, tt := range tests {
		t.Run(tt.proto+"/"+tt.file, func(t *testing.T) {
			p, err := New(tt.proto, Options{Root: dir, MaxOutput: tt.maxOut})
			if err != nil {
				t.Fatal(err)
			}
			var in []byte
			for range MaxOutFiles + 10 {
				in = append(in, tt.req(tt.file)...)
			}
			var out Out
			defer out.Reset()
			err = p.NewSession().Feed(&out, in)
			if !errors.Is(err, ErrOutputCap) || !errors.Is(err, ErrProtocol) || errors.Is(err, ErrClose) {
				t.Fatalf("err = %v, want ErrOutputCap (a protocol error, close now)", err)
			}
			served := out.Files()
			if tt.file == "small" {
				served = bytes.Count(out.Buf, []byte("ssss\x00\x00\x00\x00")) + bytes.Count(out.Buf, []byte("HTTP/1.1 200"))
			}
			if served != tt.wantServed {
				t.Fatalf("%d requests answered before the cap, want %d", served, tt.wantServed)
			}
		})
	}
}

func httpGet(name string) []byte { return []byte("GET /" + name + " HTTP/1.1\r\nHost: x\r\n\r\n") }
func fileReq(name string) []byte { return AppendFrame(nil, []byte(name)) }

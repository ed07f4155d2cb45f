package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
)

func TestParseFileFlags(t *testing.T) {
	self := fmt.Sprint(os.Getpid())
	tests := []struct {
		args []string
		ok   bool
		want string // in the error
	}{
		{[]string{"-addr", "127.0.0.1:1", "-proto", "file"}, true, ""},
		{[]string{"-addr", "127.0.0.1:1", "-proto", "http", "-path", "/any/thing.txt"}, true, ""},
		{[]string{"-model", "epoll-et", "-proto", "http", "-path", "/1m.bin"}, true, ""},
		{[]string{"-model", "epoll-et", "-proto", "http", "-path", "/"}, true, ""},
		{[]string{"-model", "epoll-et", "-proto", "file", "-file", "mine.txt", "-server-arg=-root=/srv"}, true, ""},
		{[]string{"-model", "epoll-et", "-proto", "file", "-file", "mine.txt", "--", "-root", "/srv"}, true, ""},
		{[]string{"-addr", "127.0.0.1:1", "-proto", "file", "-size", "64"}, false, "-size is for echo, rpc and udp-echo"},
		{[]string{"-addr", "127.0.0.1:1", "-proto", "http", "-size", "64"}, false, "-size is for echo, rpc and udp-echo"},
		{[]string{"-addr", "127.0.0.1:1", "-proto", "http", "-file", "1k.bin"}, false, "-file is for -proto file"},
		{[]string{"-addr", "127.0.0.1:1", "-path", "/x"}, false, "-path is for -proto http"},
		{[]string{"-addr", "127.0.0.1:1", "-proto", "file", "-file", "/1k.bin"}, false, "1k.bin, 16k.bin"},
		{[]string{"-addr", "127.0.0.1:1", "-proto", "http", "-path", "1k.bin"}, false, "/1k.bin, /16k.bin"},
		{[]string{"-model", "epoll-et", "-proto", "file", "-file", "2k.bin"}, false, "standard files only: index.html, 1k.bin"},
		{[]string{"-model", "epoll-et", "-proto", "http", "-path", "/2k.bin"}, false, "standard files only: /index.html, /1k.bin"},
		{[]string{"-addr", "127.0.0.1:1", "-proto", "gopher"}, false, "echo, rpc, file, http or udp-echo"},
		{[]string{"-addr", "127.0.0.1:1", "-server-pid", fmt.Sprint(os.Getppid())}, true, ""},
		{[]string{"-addr", "127.0.0.1:1", "-server-pid", self}, false, "want the pid of the server"},
		{[]string{"-addr", "127.0.0.1:1", "-server-pid", "999999999"}, false, "no such process"},
		{[]string{"-model", "epoll-et", "-server-pid", fmt.Sprint(os.Getppid())}, false, "-server-pid is for a server loadgen did not start"},
	}
	for _, tt := range tests {
		o, err := parse(tt.args, io.Discard)
		if (err == nil) != tt.ok || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("parse(%q): err = %v, want ok=%v %q", tt.args, err, tt.ok, tt.want)
			continue
		}
		if err == nil && (o.Workload.Proto == "file" || o.Workload.Proto == "http") && o.Workload.Size != 0 {
			t.Errorf("parse(%q): size %d, want 0 for %s", tt.args, o.Workload.Size, o.Workload.Proto)
		}
	}
	var usage bytes.Buffer
	parse([]string{"-h"}, &usage)
	for _, want := range []string{"-proto file -file 1m.bin", "-proto http -path /index.html", "-server-pid"} {
		if !strings.Contains(usage.String(), want) {
			t.Errorf("usage lacks %q", want)
		}
	}
}

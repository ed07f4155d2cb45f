package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"
)

// The udp-echo flags: what parse takes, and what it refuses with a reason.
func TestParseUDPFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string // in the error; "" for none
	}{
		{[]string{"-model", "epoll-et", "-proto", "udp-echo", "-c", "100"}, ""},
		{[]string{"-model", "epoll-et", "-proto", "udp-echo", "-c", "100", "-rate", "50000", "-batch", "32"}, ""},
		{[]string{"-addr", "127.0.0.1:1", "-proto", "udp-echo", "-size", "32", "-pipeline", "8"}, ""},
		{[]string{"-model", "fork", "-proto", "udp-echo"}, "-model fork does not serve -proto udp-echo"},
		{[]string{"-model", "thread", "-proto", "udp-echo"}, "models that do: epoll-et"},
		{[]string{"-model", "epoll-et", "-proto", "udp-echo", "-unix"}, "runs over UDP"},
		{[]string{"-addr", "unix:/tmp/x.sock", "-proto", "udp-echo"}, "runs over UDP"},
		{[]string{"-model", "epoll-et", "-batch", "4"}, "-batch is for -proto udp-echo"},
		{[]string{"-model", "epoll-et", "-proto", "udp-echo", "-batch", "2000"}, "to 1024"},
		{[]string{"-model", "epoll-et", "-proto", "udp-echo", "-size", "70000"}, "at most 65507 bytes"},
		{[]string{"-model", "epoll-et", "-proto", "udp-echo", "-size", "16"}, "at least 32"},
		{[]string{"-model", "epoll-et", "-proto", "udp-echo", "-idle", "10"}, "idle connections"},
		{[]string{"-model", "epoll-et", "-proto", "udp-echo", "-heartbeat", "1s"}, "heartbeats"},
		{[]string{"-model", "epoll-et", "-proto", "udp-echo", "-reconnect"}, "no connection to make"},
		{[]string{"-model", "epoll-et", "-proto", "udp-echo", "-file", "1k.bin"}, "-file is for -proto file"},
		{[]string{"-model", "epoll-et", "-proto", "udp-echo", "-rate", "1000", "-pipeline", "4"}, "closed loop's"},
	}
	for _, tt := range tests {
		o, err := parse(tt.args, io.Discard)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("parse(%q): %v", tt.args, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("parse(%q): err = %v, want one saying %q", tt.args, err, tt.want)
		case err == nil && (o.Workload.Heartbeat != 0 || o.Workload.Batch < 1):
			t.Errorf("parse(%q): heartbeat %v, batch %d; want none (no idle connections) and at least 1", tt.args, o.Workload.Heartbeat, o.Workload.Batch)
		}
	}
	// A stream protocol's workload has no batch, and keeps its heartbeat.
	if o, err := parse([]string{"-model", "epoll-et"}, io.Discard); err != nil || o.Workload.Batch != 0 || o.Workload.Heartbeat != 5*time.Second {
		t.Errorf("echo: batch %d, heartbeat %v, %v; want 0 and 5s", o.Workload.Batch, o.Workload.Heartbeat, err)
	}
	var usage bytes.Buffer
	parse([]string{"-h"}, &usage)
	for _, want := range []string{"-proto udp-echo -c 100 -rate 50000", "udp-echo  datagrams of -size bytes", "-batch applies to both", "-server-arg=-batch=N"} {
		if !strings.Contains(usage.String(), want) {
			t.Errorf("usage lacks %q", want)
		}
	}
}

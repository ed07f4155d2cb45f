package main

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestAgentFlags: -agents and its companions parse (a list or @FILE), and
// what cannot go with them is refused, saying why.
func TestAgentFlags(t *testing.T) {
	dir := t.TempDir()
	hosts := filepath.Join(dir, "hosts")
	if err := os.WriteFile(hosts, []byte("# the fleet\nroot@198.18.1.2\n\nroot@198.18.2.2  # second\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := []string{"-addr", "198.18.0.1:7000"}
	cases := []struct {
		name    string
		args    []string
		targets []string
		err     string
	}{
		{"list", []string{"-agents", "root@198.18.1.2,root@198.18.2.2", "-ssh-opt", "UserKnownHostsFile=/x", "-ssh-port", "2222"}, []string{"root@198.18.1.2", "root@198.18.2.2"}, ""},
		{"file", []string{"-agents", "@" + hosts}, []string{"root@198.18.1.2", "root@198.18.2.2"}, ""},
		{"one host", []string{"-agents", "h1"}, nil, "at least two hosts"},
		{"no such file", []string{"-agents", "@" + filepath.Join(dir, "none")}, nil, "no such file"},
		{"companion alone", []string{"-ssh-port", "22"}, nil, "-ssh-port is for -agents"},
		{"ssh-opt not an option", []string{"-agents", "a,b", "-ssh-opt", "yes"}, nil, "not an ssh option"},
		{"server-pid", []string{"-agents", "a,b", "-server-pid", "1"}, []string{"a", "b"}, ""},
		{"unix", []string{"-agents", "a,b", "-addr", "unix:/tmp/s"}, nil, "not unix:PATH"},
		{"bad destination", []string{"-agents", "a,-oProxyCommand=x"}, nil, "not a destination"},
		{"agent-bin not executable", []string{"-agents", "a,b", "-agent-bin", hosts}, nil, "not an executable"},
		{"search", []string{"-agents", "a,b", "-search", "p99<=1ms"}, nil, "-search"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if !slices.Contains(args, "-addr") {
				args = append(slices.Clone(addr), args...)
			}
			o, err := parse(args, io.Discard)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("parse %q: err %v, want %q", args, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(o.agents.targets, tc.targets) {
				t.Errorf("targets %q, want %q", o.agents.targets, tc.targets)
			}
		})
	}
	_, err := parse([]string{"-model", "epoll-et", "-agents", "a,b"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "not -model") {
		t.Errorf("-agents with -model: %v", err)
	}
}

// TestStartAt: -start-at takes RFC 3339 or Unix seconds, refuses the past and
// what has no one window, and a loadgen ready only after the instant fails
// instead of opening a window the others did not.
func TestStartAt(t *testing.T) {
	future := time.Now().Add(time.Hour).Truncate(time.Second)
	addr := []string{"-addr", "127.0.0.1:7000"}
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"-start-at", future.Format(time.RFC3339)}, ""},
		{[]string{"-start-at", strconv.FormatInt(future.Unix(), 10)}, ""},
		{[]string{"-start-at", "yesterday"}, "neither an RFC 3339 time"},
		{[]string{"-start-at", "100"}, "in the past"},
		{[]string{"-start-at", future.Format(time.RFC3339), "-agents", "a,b"}, "with -agents"},
		{[]string{"-start-at", future.Format(time.RFC3339), "-n", "100"}, "steady-state gate"},
	} {
		o, err := parse(append(slices.Clone(addr), tc.args...), io.Discard)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || o.WindowAt == nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if at, err := o.WindowAt(time.Now()); err != nil || !at.Equal(future) {
			t.Errorf("%q: window at %v, %v; want %v", tc.args, at, err, future)
		}
		if _, err := o.WindowAt(future.Add(time.Second)); err == nil || !strings.Contains(err.Error(), "only 1s after -start-at") {
			t.Errorf("%q: ready after the instant: %v", tc.args, err)
		}
	}
}

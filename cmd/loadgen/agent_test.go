package main

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
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

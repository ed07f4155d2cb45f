package agents

// How the coordinator reaches the agents' hosts: the OpenSSH client the user
// already has, its options passed through, host keys checked as ssh checks
// them (nothing here turns that off).

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"

	"concbench/internal/shquote"
)

// SSH is how the coordinator starts agents: `ssh [options] TARGET -- REMOTE
// agent`, and, to copy the agent binary first, `scp [options] FILE
// TARGET:PATH`.
type SSH struct {
	// Program and Copier are the ssh and scp executables ("" means "ssh" and
	// "scp" on the PATH).
	Program, Copier string
	// Port (-p, scp's -P), Identity (-i) and ConfigFile (-F) are given when
	// set; Options are -o options ("Key=Value"), in order.
	Port       int
	Identity   string
	ConfigFile string
	Options    []string
}

// defaultOptions come after the user's (ssh takes the first value it gets for
// an option, so the user's win): never prompt (the agent's input is the
// conversation, and a password prompt would hang the run), and notice a host
// that stopped answering within about 15 s.
var defaultOptions = []string{"BatchMode=yes", "ServerAliveInterval=5", "ServerAliveCountMax=3"}

// common is the options ssh and scp share (the port's flag differs).
func (s SSH) common(portFlag string) []string {
	var args []string
	if s.ConfigFile != "" {
		args = append(args, "-F", s.ConfigFile)
	}
	if s.Port != 0 {
		args = append(args, portFlag, strconv.Itoa(s.Port))
	}
	if s.Identity != "" {
		args = append(args, "-i", s.Identity)
	}
	for _, o := range append(append([]string{}, s.Options...), defaultOptions...) {
		args = append(args, "-o", o)
	}
	return args
}

// command is the ssh command line that runs remote (its words quoted for the
// remote shell) on target, without a terminal.
func (s SSH) command(target string, remote ...string) []string {
	args := append([]string{cmp.Or(s.Program, "ssh")}, s.common("-p")...)
	return append(args, "-T", target, "--", shquote.Join(remote))
}

// copyCommand is the scp command line that copies local to path on target.
func (s SSH) copyCommand(local, target, path string) []string {
	args := append([]string{cmp.Or(s.Copier, "scp")}, s.common("-P")...)
	return append(args, "-q", "--", local, scpHost(target)+":"+path)
}

// scpHost is target as scp's destination: an IPv6 literal goes in brackets.
func scpHost(target string) string {
	user, host, ok := strings.Cut(target, "@")
	if !ok {
		user, host = "", target
	}
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		host = "[" + host + "]"
	}
	if ok {
		return user + "@" + host
	}
	return host
}

// ValidTarget refuses an agent destination that ssh would read as an option,
// or that has no host.
func ValidTarget(t string) error {
	_, host, ok := strings.Cut(t, "@")
	if !ok {
		host = t
	}
	switch {
	case t == "" || host == "":
		return fmt.Errorf("agent %q: no host (give USER@HOST or HOST)", t)
	case strings.HasPrefix(t, "-"):
		return fmt.Errorf("agent %q: a destination cannot start with '-'", t)
	case strings.ContainsAny(t, " \t\n,"):
		return fmt.Errorf("agent %q: a destination has no spaces or commas", t)
	}
	return nil
}

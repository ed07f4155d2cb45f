package bench

// The C peers of peers/ — cepoll (epoll), curing (io_uring on liburing) and
// clibevent (libevent): where bench finds each and how it is started. They take
// the same command line, and like concbench's server they pick a free port and
// say it as their first line.

import (
	"net"
	"path/filepath"
)

// findC returns the find function of the C peer built as bin/exe: the path
// PeerOptions names (set), else exe beside loadgen (make build puts them all in
// bin/). need says what building it takes beyond make peers ("" for nothing).
func findC(exe, need string, set func(PeerOptions) string) func(PeerOptions, string) (string, error) {
	return func(o PeerOptions, loadgen string) (string, error) {
		bin := set(o)
		if bin == "" {
			bin = filepath.Join(filepath.Dir(loadgen), exe)
		}
		howTo := " (make peers builds it)"
		if need != "" {
			howTo = " (make peers builds it where " + need + " is installed; make deps installs it)"
		}
		return findFile(exe, bin, howTo)
	}
}

var (
	findCepoll    = findC("cepoll", "", func(o PeerOptions) string { return o.Cepoll })
	findCuring    = findC("curing", "liburing-dev", func(o PeerOptions) string { return o.Curing })
	findClibevent = findC("clibevent", "libevent-dev", func(o PeerOptions) string { return o.Clibevent })
)

// prepareC is the C peers' command line for cell c.
func prepareC(r *Runner, c Cell, _ string, _ *PeerRun) (args []string, addr string, err error) {
	args = []string{"-proto", c.Proto, "-addr", net.JoinHostPort(r.listenHost(), "0")}
	if r.Agents != nil {
		args = append(args, "-allow-remote") // the agents are on other hosts
	}
	return args, "", nil
}

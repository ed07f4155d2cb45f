package bench

// peer:cepoll, the C epoll server of peers/cepoll: where bench finds it and how it
// is started. Like concbench's server it picks a free port and says it as its
// first line.

import "path/filepath"

// findCepoll is the cepoll PeerOptions names, else the one beside loadgen (make
// build puts both in bin/).
func findCepoll(o PeerOptions, loadgen string) (string, error) {
	bin := o.Cepoll
	if bin == "" {
		bin = filepath.Join(filepath.Dir(loadgen), "cepoll")
	}
	return findFile("cepoll", bin, " (make peers builds it)")
}

func prepareCepoll(_ *Runner, c Cell, _ string, _ *PeerRun) (args []string, addr string, err error) {
	return []string{"-proto", c.Proto, "-addr", "127.0.0.1:0"}, "", nil
}

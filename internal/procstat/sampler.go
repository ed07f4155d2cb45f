package procstat

import (
	"sync"
	"time"
)

// Sampler samples a process tree every interval on its own goroutine until Stop.
type Sampler struct {
	procfs string
	root   int
	stop   chan struct{}
	done   chan struct{}

	mu      sync.Mutex
	samples []Tree
	err     error
}

// Start begins sampling root's tree under procfs every interval.
func Start(procfs string, root int, interval time.Duration) *Sampler {
	s := &Sampler{procfs: procfs, root: root, stop: make(chan struct{}), done: make(chan struct{})}
	go s.loop(interval)
	return s
}

func (s *Sampler) loop(interval time.Duration) {
	defer close(s.done)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if !s.take() {
			return
		}
		select {
		case <-s.stop:
			s.take()
			return
		case <-tick.C:
		}
	}
}

func (s *Sampler) take() bool {
	t, err := Sample(s.procfs, s.root)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.err = err
		return false
	}
	s.samples = append(s.samples, t)
	return true
}

// Latest returns the last sample taken, if any.
func (s *Sampler) Latest() (Tree, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.samples) == 0 {
		return Tree{}, false
	}
	return s.samples[len(s.samples)-1], true
}

// Stop takes a last sample, stops, and returns every sample and the error that
// ended sampling early (ErrGone if the root exited), if any.
func (s *Sampler) Stop() ([]Tree, error) {
	select {
	case <-s.done:
	default:
		close(s.stop)
		<-s.done
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples, s.err
}

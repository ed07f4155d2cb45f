package procstat

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// Sampler samples a process tree every interval on its own goroutine until Stop.
// It stops early when the root process is gone; a sample that fails for another
// reason (ErrSampling: this process out of descriptors, say) is missing, counted,
// and the next one is taken as usual.
type Sampler struct {
	procfs string
	root   int
	cgroup string // the tree's cgroup v2 directory, "" for none (SampleIn)
	stop   chan struct{}
	done   chan struct{}

	mu       sync.Mutex
	samples  []Tree
	gone     error // ErrGone (wrapped): sampling ended
	failed   int   // samples that failed with ErrSampling
	firstErr error // the first of those
}

// Start begins sampling root's tree under procfs every interval.
func Start(procfs string, root int, interval time.Duration) *Sampler {
	return StartIn(procfs, root, "", interval)
}

// StartIn is Start of a tree that lives in a cgroup of its own (SampleIn).
func StartIn(procfs string, root int, cgroup string, interval time.Duration) *Sampler {
	s := &Sampler{procfs: procfs, root: root, cgroup: cgroup, stop: make(chan struct{}), done: make(chan struct{})}
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

// take takes one sample and reports whether sampling goes on.
func (s *Sampler) take() bool {
	t, err := SampleIn(s.procfs, s.root, s.cgroup)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err == nil:
		s.samples = append(s.samples, t)
	case errors.Is(err, ErrGone):
		s.gone = err
		return false
	default:
		s.failed++
		if s.firstErr == nil {
			s.firstErr = err
		}
	}
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

// Stop takes a last sample, stops, and returns every sample taken, and an error
// if any is missing: wrapping ErrGone if the root exited (sampling ended there),
// or ErrSampling, with how many samples failed and the first reason, if some
// could not be read.
func (s *Sampler) Stop() ([]Tree, error) {
	select {
	case <-s.done:
	default:
		close(s.stop)
		<-s.done
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.gone != nil:
		return s.samples, s.gone
	case s.failed > 0:
		return s.samples, fmt.Errorf("%d of %d samples failed, the first: %w", s.failed, s.failed+len(s.samples), s.firstErr)
	}
	return s.samples, nil
}

package supervise

// What a supervised process writes: every byte goes to a bounded tail (kept for a
// failure's record); stdout's first line is handed over once; the rest is
// forwarded to Options.Output.

import (
	"bytes"
	"io"
	"strings"
	"sync"
)

// TailMax is how many bytes a Tail keeps.
const TailMax = 4 << 10

// Tail keeps the last TailMax bytes written to it. The zero value is ready.
type Tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *Tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > TailMax {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-TailMax:]...)
	}
	return len(p), nil
}

func (t *Tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// output takes a process's stdout and stderr, each from its own copying goroutine.
type output struct {
	tail Tail

	mu       sync.Mutex // guards the fields below and serializes writes to fwd
	fwd      io.Writer  // nil: the tail only
	first    []byte     // stdout's first line so far
	line     string     // the first line, once lineDone is closed and gotLine is set
	gotLine  bool
	lineDone chan struct{} // closed when the first line is complete or stdout ended
}

func newOutput(fwd io.Writer) *output {
	return &output{fwd: fwd, lineDone: make(chan struct{})}
}

func (o *output) stdout(b []byte) (int, error) {
	o.tail.Write(b)
	o.mu.Lock()
	defer o.mu.Unlock()
	rest := b
	if !o.lineKnown() {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			o.first = append(o.first, b...)
			if len(o.first) > TailMax { // no line end in sight: this much is the line
				o.endLine(true)
			}
			return len(b), nil
		}
		o.first = append(o.first, b[:i]...)
		o.endLine(true)
		rest = b[i+1:]
	}
	o.forward(rest)
	return len(b), nil
}

func (o *output) stderr(b []byte) (int, error) {
	o.tail.Write(b)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.forward(b)
	return len(b), nil
}

// stdoutEnded says stdout reached its end: a first line without a line end
// still counts.
func (o *output) stdoutEnded() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.lineKnown() {
		o.endLine(len(o.first) > 0)
	}
}

// endLine hands over the first line (got), or says there is none. mu is held.
func (o *output) endLine(got bool) {
	o.line = strings.TrimSpace(string(o.first[:min(len(o.first), TailMax)]))
	o.gotLine = got
	o.first = nil
	close(o.lineDone)
}

// lineKnown reports whether endLine has run. mu is held.
func (o *output) lineKnown() bool {
	select {
	case <-o.lineDone:
		return true
	default:
		return false
	}
}

// forward writes b on to fwd; a failing fwd (a closed terminal) only loses the
// copy, never the process's output. mu is held.
func (o *output) forward(b []byte) {
	if o.fwd != nil && len(b) > 0 {
		o.fwd.Write(b)
	}
}

func (o *output) firstLine() (string, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.line, o.gotLine
}

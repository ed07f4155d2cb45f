package trial

// The server's own counters: a concbench server started by Run writes them to
// its -stats file (a JSON line every 100 ms and one at exit); Run reads them back
// so that a client-side error comes with the server's reason beside it.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"concbench/internal/result"
)

// readStats reads a -stats file's lines.
func readStats(path string) ([]result.ServerCounters, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseStats(f)
}

// parseStats parses -stats lines (models.StatsLine); a last line cut short (the
// server killed while writing it) is left out.
func parseStats(r io.Reader) ([]result.ServerCounters, error) {
	var lines []result.ServerCounters
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		var c result.ServerCounters
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			if !sc.Scan() {
				break // the last line, cut short
			}
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		lines = append(lines, c)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("no counters written")
	}
	return lines, nil
}

// serverCounters sets s's counters from the -stats lines: the last one (at the
// server's exit), the last one written before the window opened and the first
// after it closed.
func serverCounters(s *result.Server, lines []result.ServerCounters, start, end time.Time) {
	last := lines[len(lines)-1]
	s.Counters = &last
	if start.IsZero() {
		return
	}
	for i := range lines {
		c := &lines[i]
		if c.UnixMS <= start.UnixMilli() {
			s.CountersAtWindowStart = c
		}
		if c.UnixMS >= end.UnixMilli() && s.CountersAtWindowEnd == nil {
			s.CountersAtWindowEnd = c
		}
	}
}

// flagValue is the value of flag name in args (-name V, -name=V, --name…), or "".
func flagValue(args []string, name string) string {
	for i, a := range args {
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

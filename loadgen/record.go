package loadgen

// Recording what a loop measured: the histograms (their geometry), the per-second
// timeline and the error counts of one loop, filled by record and countError; merge
// (run.go) adds the loops' figures up when the run ends.

import (
	"math"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram geometry: 1 µs to 60 s at 3 significant digits; the per-second
// histograms of the timeline use 2 digits to stay small.
const (
	histMin    = 1
	histMax    = 60_000_000
	histDigits = 3
	secDigits  = 2
)

// loopStats is what one loop measured.
type loopStats struct {
	latency, uncorrected, sendLag, connect *hdr.Histogram
	secReqs, secErrs                       []int64
	secHist                                []*hdr.Histogram
	errors                                 [numErrorKinds]int64
	requests                               int64 // correct replies in the measured window
	rampEnd                                int64 // when the last initial connect resolved
	established                            int   // open connections when the ramp ended
	inFlightAtEnd                          int64
	pinErr                                 error // pinning the loop's thread failed
	stopped                                int64 // when the loop stopped loading
	openAtStart, openAtEnd                 int   // connections open when the window opened and closed
	idleInWindow                           int   // connections that completed no request in the window

	// Open loop: the window's scheduled sends, those of them that were parked,
	// and the times of the first sendSample (the arrival fit).
	scheduled, parked int64
	sendTimes         []int64

	// The idle connections (Workload.Idle): open now, open at the ramp's end,
	// heartbeats over the window, their latency, and their errors.
	idleOpen, idleEstablished            int
	hbSent, hbAnswered, hbLate, hbMissed int64
	hbLatency                            *hdr.Histogram
	idleErrors                           [numErrorKinds]int64

	// udp-echo: the replies the flows' sockets dropped, from the window's
	// start to the end of the drain.
	clientDrops int64
}

// record adds one correct reply to the histograms and the timeline.
func (l *loop) record(s slot, now int64) {
	if !l.loading {
		return
	}
	lat := clampUS(now - s.intended)
	sec := l.second(now)
	l.st.secReqs[sec]++
	l.st.secHist[sec].RecordValue(lat)
	if now < l.warmEnd {
		return
	}
	l.st.requests++
	l.st.latency.RecordValue(lat)
	if l.sh.open {
		l.st.uncorrected.RecordValue(clampUS(now - s.sent))
		l.st.sendLag.RecordValue(clampUS(s.sent - s.intended))
	}
}

// recordHeartbeat adds an idle connection's answered heartbeat.
func (l *loop) recordHeartbeat(s slot, now int64) {
	// The heartbeats sent in the window: one sent before it is in no count.
	if !l.loading || s.sent < l.warmEnd {
		return
	}
	rtt := now - s.sent
	l.st.hbAnswered++
	if rtt > int64(l.sh.cfg.Heartbeat) {
		l.st.hbLate++
	}
	l.st.hbLatency.RecordValue(clampUS(rtt))
}

// second is the timeline index of now: whole timeline steps since the load
// started, clamped to the timeline's first and last entries. The step last
// found is kept with the times it covers, so that a reply costs a division
// only when it falls in another step.
func (l *loop) second(now int64) int {
	if now >= l.secFrom && now < l.secTo {
		return l.sec
	}
	step, last := int64(l.sh.cfg.TimelineStep), len(l.st.secReqs)-1
	sec := min(max(int((now-l.t0)/step), 0), last)
	l.sec, l.secFrom, l.secTo = sec, l.t0+int64(sec)*step, l.t0+int64(sec+1)*step
	if sec == 0 {
		l.secFrom = math.MinInt64 // the first entry takes what came before the load
	}
	if sec == last {
		l.secTo = math.MaxInt64 // the last, what came after
	}
	return sec
}

// countError counts one error of kind, in the timeline too while loading.
func (l *loop) countError(kind ErrorKind, now int64) {
	l.st.errors[kind]++
	if l.loading {
		l.st.secErrs[l.second(now)]++
	}
}

// clampUS converts ns to µs within the histograms' range.
func clampUS(ns int64) int64 {
	return min(max(ns/1000, 0), histMax)
}

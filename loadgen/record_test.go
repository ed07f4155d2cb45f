package loadgen

import (
	"math/rand/v2"
	"testing"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"concbench/internal/result"
)

// TestRecordFolds checks that recording a reply once, in the current
// segment's histogram folded on into the timeline and the window, gives the
// histograms and counts that recording each reply in each would: the timeline
// entries at their coarser digits, the window's at full, the replies that came
// before the window opened (also those after its start, seen before the
// coordinator opened it) in no window figure.
func TestRecordFolds(t *testing.T) {
	const step, seconds = int64(time.Second), 6
	cases := []struct {
		name       string
		t0         int64
		ws, opened int64 // the window's start, and when the loop opens it (0: opened with the load)
	}{
		{"opened mid-step, seen late", 1000, 1_300_000_000, 1_500_000_000},
		{"opened on a step", 0, 2 * step, 2 * step},
		{"opened with the load", 7, 7, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := &loop{sh: &shared{cfg: Config{Workload: result.Workload{TimelineStep: time.Duration(step)}}}}
			l.loading, l.t0, l.warmEnd = true, tc.t0, int64(1<<63-1)
			if tc.opened == 0 {
				l.openWindow(tc.ws)
			}
			l.st.latency = hdr.New(histMin, histMax, histDigits)
			l.cur = hdr.New(histMin, histMax, histDigits)
			l.st.secReqs = make([]int64, seconds)
			l.st.secHist = make([]*hdr.Histogram, seconds)
			want := make([]*hdr.Histogram, seconds)
			for i := range seconds {
				l.st.secHist[i] = hdr.New(histMin, histMax, secDigits)
				want[i] = hdr.New(histMin, histMax, secDigits)
			}
			wantWin := hdr.New(histMin, histMax, histDigits)
			var wantReqs int64
			wantSec := make([]int64, seconds)
			warmEnd := l.warmEnd
			rng := rand.New(rand.NewPCG(1, 2))
			// Replies from before the load to past the timeline's end.
			for now := tc.t0 - step/2; now < tc.t0+int64(seconds+1)*step; now += 1 + rng.Int64N(200_000) {
				if tc.opened != 0 && warmEnd != tc.ws && now >= tc.opened {
					l.openWindow(tc.ws)
					warmEnd = tc.ws
				}
				lat := rng.Int64N(5_000_000_000) >> rng.IntN(24) // ns: 1 ns to 5 s, all magnitudes
				l.record(slot{intended: now - lat, sent: now - lat}, now)
				sec := min(max(int((now-tc.t0)/step), 0), seconds-1)
				wantSec[sec]++
				want[sec].RecordValue(clampUS(lat))
				if now >= warmEnd {
					wantReqs++
					wantWin.RecordValue(clampUS(lat))
				}
			}
			l.fold()
			for i := range seconds {
				if !l.st.secHist[i].Equals(want[i]) || l.st.secReqs[i] != wantSec[i] {
					t.Errorf("timeline entry %d: %d replies (p50 %d µs), want %d (p50 %d µs)", i,
						l.st.secHist[i].TotalCount(), l.st.secHist[i].ValueAtQuantile(50), want[i].TotalCount(), want[i].ValueAtQuantile(50))
				}
			}
			if !l.st.latency.Equals(wantWin) || l.st.requests != wantReqs || wantReqs == 0 {
				t.Errorf("window: %d replies (%d counted, p99 %d µs), want %d (p99 %d µs)", l.st.latency.TotalCount(), l.st.requests,
					l.st.latency.ValueAtQuantile(99), wantWin.TotalCount(), wantWin.ValueAtQuantile(99))
			}
		})
	}
}

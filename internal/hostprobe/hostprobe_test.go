package hostprobe

import (
	"runtime"
	"testing"
)

// A probe on this machine's CPUs gives round trips and spins of a sensible
// size (loose bounds: the machine is shared and the test runs beside others).
func TestRun(t *testing.T) {
	b := 0
	if runtime.NumCPU() > 1 {
		b = 1
	}
	p, err := Run(0, b, 200)
	if err != nil {
		t.Fatal(err)
	}
	if !(p.WakeRTTUS > 0 && p.WakeRTTUS <= p.WakeRTTP90US && p.WakeRTTUS < 1e5) {
		t.Errorf("round trip %v µs (p90 %v)", p.WakeRTTUS, p.WakeRTTP90US)
	}
	if len(p.SpinUS) != 2 || p.SpinUS[0] <= 0 || p.SpinUS[1] <= 0 {
		t.Errorf("spins %v", p.SpinUS)
	}
	if _, err := Run(0, 4096, 10); err == nil {
		t.Error("a probe on a CPU that does not exist succeeded")
	}
}

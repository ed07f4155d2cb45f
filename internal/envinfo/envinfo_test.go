package envinfo

import "testing"

func TestCPUModel(t *testing.T) {
	in := "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz\n\nprocessor\t: 1\nmodel name\t: other\n"
	if got, want := CPUModel([]byte(in)), "Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got := CPUModel([]byte("processor: 0\n")); got != "" {
		t.Fatalf("got %q, want empty", got)
	}
}

func TestCollect(t *testing.T) {
	e := Collect()
	if e.Kernel == "" || e.GoVersion == "" || e.NumCPU < 1 || e.Sysctls["net/core/somaxconn"] == "" {
		t.Fatalf("incomplete environment: %+v", e)
	}
}

package bench

import (
	"slices"
	"strings"
	"testing"

	"concbench/models"
)

func TestCellConfig(t *testing.T) {
	fair := Spec{Configure: ConfigureFair, ProcessCap: 500, ThreadCap: 2000}
	for _, tt := range []struct {
		name string
		sp   Spec
		cell Cell
		want []string
	}{
		{"procpool: a worker per connection", fair, Cell{Model: "procpool", Conns: 100}, []string{"-workers=100"}},
		{"procpool: idle connections hold workers too", fair, Cell{Model: "procpool", Conns: 10, Idle: 90}, []string{"-workers=100"}},
		{"procpool: at the machine's cap", fair, Cell{Model: "procpool", Conns: 1000}, []string{"-workers=500"}},
		{"procpool: one connection", fair, Cell{Model: "procpool", Conns: 1}, []string{"-workers=1"}},
		{"threadpool: the default covers 64", fair, Cell{Model: "threadpool", Conns: 10}, nil},
		{"threadpool: threads to cover the connections", fair, Cell{Model: "threadpool", Conns: 100}, []string{"-max-threads=100"}},
		{"threadpool: a quarter of the kernel's threads", fair, Cell{Model: "threadpool", Conns: 1000}, []string{"-max-threads=500"}},
		{"prefork keeps its default", fair, Cell{Model: "prefork", Conns: 1000}, nil},
		{"an event loop has no pool", fair, Cell{Model: "epoll-et", Conns: 1000}, nil},
		{"defaults", Spec{Configure: ConfigureDefaults}, Cell{Model: "procpool", Conns: 100}, nil},
		{"a run before the field", Spec{}, Cell{Model: "procpool", Conns: 100}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.sp.CellConfig(tt.cell); !slices.Equal(got, tt.want) {
				t.Errorf("CellConfig = %q, want %q", got, tt.want)
			}
		})
	}
	// The flags reach the server through loadgen.
	args := fair.Args(Cell{Model: "procpool", Proto: "echo", Conns: 10}, "out.json")
	if !slices.Contains(args, "-server-arg=-workers=10") {
		t.Errorf("Args %q: no -server-arg=-workers=10", args)
	}
	if defaultMaxThreads != models.DefaultMaxThreads {
		t.Errorf("defaultMaxThreads %d, models.DefaultMaxThreads %d", defaultMaxThreads, models.DefaultMaxThreads)
	}
	// Every preset configures fairly; a spec refuses an unknown value, and a
	// resumed run refuses to mix fair and default cells.
	for name, p := range Presets {
		if p.Configure != ConfigureFair {
			t.Errorf("preset %s: configure %q", name, p.Configure)
		}
	}
	bad := Presets["quick"]
	bad.Models = []string{"epoll-et"}
	bad.Configure = "generous"
	if err := bad.Validate(models.Names()); err == nil || !strings.Contains(err.Error(), "fair, defaults") {
		t.Errorf("Validate: %v", err)
	}
	if why := fair.SameMeasurement(Spec{}); !strings.Contains(why, "configure") {
		t.Errorf("SameMeasurement(fair, defaults) = %q", why)
	}
	if why := fair.SameMeasurement(Spec{Configure: ConfigureFair, ProcessCap: 7}); why != "" {
		t.Errorf("SameMeasurement differs on the caps alone: %q", why)
	}
}

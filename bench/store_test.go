package bench

import (
	"concbench/internal/result"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// damage is one way a trial's file is spoilt, and what bench must say of it.
type damage struct {
	model  string                      // the cell it spoils (a model name the fake loadgen runs fine)
	file   string                      // "record" or "result": the file spoilt
	spoil  func(b []byte) []byte       // the spoilt content, from the original
	why    string                      // what the message must say is wrong
	change func(t *testing.T, s Store) // instead of spoil: any other change (nil: none)
}

// damages spoils a trial's record or result in every way a run directory meets:
// cut short, empty, not JSON, a file of another schema, another trial's file, a
// result gone.
var damages = []damage{
	{model: "cutrecord", file: "record", spoil: func(b []byte) []byte { return b[:len(b)/2] }, why: "cut short: the JSON ends mid-value"},
	{model: "emptyrecord", file: "record", spoil: func([]byte) []byte { return nil }, why: "empty"},
	{model: "textrecord", file: "record", spoil: func([]byte) []byte { return []byte("hello: not JSON\n") }, why: "not JSON: invalid character 'h'"},
	{model: "twovalues", file: "record", spoil: func(b []byte) []byte { return append(b, b...) }, why: "not one JSON value: more data after byte"},
	{model: "listrecord", file: "record", spoil: func([]byte) []byte { return []byte("[1, 2]") }, why: "not a trial record: json: cannot unmarshal array"},
	// A loadgen result where the record should be: valid JSON of another schema.
	{model: "resultasrecord", file: "record", spoil: nil, why: "not a trial record: it names no trial", change: func(t *testing.T, s Store) {
		copyFile(t, s.TrialPath(trialOf("resultasrecord"))+".json", s.TrialPath(trialOf("resultasrecord"))+".trial.json")
	}},
	{model: "otherrecord", file: "record", spoil: nil, why: "the record of trial echo/c2/intact/rep1, not of echo/c2/otherrecord/rep1", change: func(t *testing.T, s Store) {
		copyFile(t, s.TrialPath(trialOf("intact"))+".trial.json", s.TrialPath(trialOf("otherrecord"))+".trial.json")
	}},
	{model: "cutresult", file: "result", spoil: func(b []byte) []byte { return b[:len(b)/2] }, why: "cut short"},
	{model: "textresult", file: "result", spoil: func([]byte) []byte { return []byte("\x00\x01 binary junk") }, why: "not JSON: invalid character"},
	// The trial's record where its result should be: valid JSON, no schema.
	{model: "recordasresult", file: "result", spoil: nil, why: "not a loadgen result: no schema version", change: func(t *testing.T, s Store) {
		copyFile(t, s.TrialPath(trialOf("recordasresult"))+".trial.json", s.TrialPath(trialOf("recordasresult"))+".json")
	}},
	{model: "newschema", file: "result", spoil: func([]byte) []byte { return []byte(`{"schema": 999}`) }, why: fmt.Sprintf("a loadgen result of schema 999: this build reads %d to %d", result.OldestSchema, result.SchemaVersion)},
	{model: "otherresult", file: "result", spoil: nil, why: `the result of another trial: model "intact", echo, c=2`, change: func(t *testing.T, s Store) {
		copyFile(t, s.TrialPath(trialOf("intact"))+".json", s.TrialPath(trialOf("otherresult"))+".json")
	}},
	{model: "goneresult", file: "result", spoil: nil, why: "missing: the trial's record names it as its result", change: func(t *testing.T, s Store) {
		if err := os.Remove(s.TrialPath(trialOf("goneresult")) + ".json"); err != nil {
			t.Fatal(err)
		}
	}},
}

func trialOf(model string) Trial {
	return Trial{Cell: Cell{Model: model, Proto: "echo", Work: "none", Conns: 2}, Rep: 1}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// (d damage) path is the file d spoils.
func (d damage) path(s Store) string {
	if d.file == "record" {
		return s.TrialPath(trialOf(d.model)) + ".trial.json"
	}
	return s.TrialPath(trialOf(d.model)) + ".json"
}

// Damaged files in a run directory: each is named with what is wrong, never
// crashes Load, the report or a resumed run, and its trial counts as not run — the
// report leaves it out and says so, a resumed run runs exactly those trials again.
// A damaged plan.json stops both with its name.
func TestDamagedFiles(t *testing.T) {
	models := []string{"intact"}
	for _, d := range damages {
		models = append(models, d.model)
	}
	sp := Spec{Models: models, Conns: []int{2}, Protos: []string{"echo"}, Works: []string{"none"},
		Reconnect: "off", Repeat: 1, Duration: 100 * time.Millisecond, Size: 16}
	store := Store{Dir: t.TempDir()}
	r := &Runner{Spec: sp, Store: store, Loadgen: fakeLoadgen(t)}
	if n, err := r.Run(context.Background()); err != nil || n.OK != len(models) {
		t.Fatalf("the first run: %+v, %v; want every trial ok", n, err)
	}
	for _, d := range damages {
		if d.change != nil {
			d.change(t, store)
			continue
		}
		b, err := os.ReadFile(d.path(store))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(d.path(store), d.spoil(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// checkNamed says whether text names every damaged file with what is wrong.
	checkNamed := func(what, text string) {
		t.Helper()
		for _, d := range damages {
			if want := d.path(store) + ": " + d.why; !strings.Contains(text, want) {
				t.Errorf("%s does not say %q", what, want)
			}
		}
	}

	// Load: the damaged trials are left out, their files listed in plan order.
	ds, err := store.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(ds.Records) != 1 || len(ds.Results) != 1 {
		t.Errorf("Load kept %d records and %d results, want only the intact trial's", len(ds.Records), len(ds.Results))
	}
	var msgs []string
	for i, e := range ds.Damaged {
		msgs = append(msgs, e.Error())
		if i < len(damages) && e.Path != damages[i].path(store) {
			t.Errorf("damaged[%d] is %s, want %s", i, e.Path, damages[i].path(store))
		}
	}
	if len(ds.Damaged) != len(damages) {
		t.Errorf("%d damaged files found, want %d:\n%s", len(ds.Damaged), len(damages), strings.Join(msgs, "\n"))
	}
	checkNamed("Load", strings.Join(msgs, "\n"))
	for _, d := range damages {
		if done, err := store.Check(trialOf(d.model)); done || !errors.As(err, new(*DamagedError)) {
			t.Errorf("Check(%s): done %v, %v; want not done, a DamagedError", d.model, done, err)
		}
	}

	// The report: drawn from the intact trial, the damaged files listed.
	if _, err := WriteAll(ds, store.Dir, filepath.Join(store.Dir, "plots")); err != nil {
		t.Fatalf("WriteAll: %v", err)
	}
	md, err := os.ReadFile(filepath.Join(store.Dir, "REPORT.md"))
	if err != nil {
		t.Fatal(err)
	}
	checkNamed("REPORT.md", string(md))
	if want := "13 planned trials have not run"; !strings.Contains(string(md), want) {
		t.Errorf("REPORT.md does not say %q", want)
	}

	// Resume: exactly the damaged trials run again, each file named first.
	pr := &progress{}
	r.Progress = pr
	n, err := r.Run(context.Background())
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	if n.Resumed != 1 || n.Rerun != len(damages) || n.OK != len(damages) {
		t.Errorf("resume: %+v, want 1 resumed, %d run again and ok", n, len(damages))
	}
	checkNamed("the resumed run's progress", strings.Join(pr.lines, "\n"))
	if ds, err = store.Load(); err != nil || len(ds.Damaged) != 0 || len(ds.Records) != len(models) || len(ds.Results) != len(models) {
		t.Errorf("after the resume: %v damaged, %d records, %d results, %v", ds.Damaged, len(ds.Records), len(ds.Results), err)
	}

	// A damaged plan stops the runner and the report, naming the file.
	plan := filepath.Join(store.Dir, "plan.json")
	b, err := os.ReadFile(plan)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		content []byte
		why     string
	}{
		{b[:len(b)/3], "cut short"},
		{[]byte("{}"), "not a bench plan: it plans no trials"},
		{[]byte("<html>"), "not JSON"},
	} {
		if err := os.WriteFile(plan, tt.content, 0o644); err != nil {
			t.Fatal(err)
		}
		want := plan + ": " + tt.why
		if _, err := store.Load(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load with plan %q: %v, want %q", tt.content, err, want)
		}
		_, err := r.Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "use another -out") {
			t.Errorf("Run with plan %q: %v, want %q and what to do", tt.content, err, want)
		}
		if got, _ := os.ReadFile(plan); string(got) != string(tt.content) {
			t.Errorf("Run rewrote the damaged plan")
		}
	}
}

// One bench at a time in a run directory: a second Lock fails at once saying who
// holds it, and the directory is free again once the holder unlocks (or exits:
// the lock is the kernel's, tested in cmd/bench).
func TestLock(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	unlock, err := s.Lock()
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Lock()
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) || !strings.Contains(err.Error(), s.Dir) {
		t.Fatalf("second Lock: %v; want ErrBusy naming %s and pid %d", err, s.Dir, os.Getpid())
	}
	unlock()
	unlock2, err := s.Lock()
	if err != nil {
		t.Fatalf("Lock after unlock: %v", err)
	}
	unlock2()
	if _, err := (Store{Dir: filepath.Join(s.Dir, "missing")}).Lock(); err == nil || errors.Is(err, ErrBusy) {
		t.Errorf("Lock of a missing directory: %v; want an error other than busy", err)
	}
}

package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"concbench/internal/result"
)

// A run directory holds:
//
//	plan.json                      the Spec and when the run started
//	trials/KEY.json, KEY.hgrm      loadgen's result and histogram of one trial
//	trials/KEY.trial.json          the TrialRecord: written last, it marks the trial done
//	REPORT.md, GROUP.csv           the report, redrawn by `bench report`
//
// KEY is Trial.Key, e.g. echo/c100/epoll-et/rep2. Every file is written to a
// temporary name and renamed into place, so a crash leaves either the whole
// trial or nothing of it.

// Trial statuses.
const (
	StatusOK      = "ok"      // loadgen ran and exited 0
	StatusFailed  = "failed"  // loadgen ran and reported a failure, or could not run
	StatusSkipped = "skipped" // not run, for the reason recorded
)

// Failure kinds of a failed trial.
const (
	FailErrors     = "errors"      // requests failed (their kinds are in the result)
	FailServerExit = "server_exit" // the server did not exit cleanly
	FailNoResult   = "no_result"   // loadgen could not run the trial (no result written)
	FailUsage      = "usage"       // loadgen refused its arguments
	FailTimeout    = "timeout"     // loadgen did not finish in time and was stopped
)

// TrialRecord is what bench records about one trial.
type TrialRecord struct {
	Trial
	Status string `json:"status"`
	// Failure is the failure kind of a failed trial; Reason says more (or why a
	// trial was skipped).
	Failure string `json:"failure,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// ExitCode is loadgen's exit status (-1: killed or not started).
	ExitCode int `json:"exit_code"`
	// Stderr is the tail of loadgen's stderr, for failures.
	Stderr string `json:"stderr,omitempty"`
	// Result is the trial's loadgen result file, relative to the run directory; ""
	// when none was written.
	Result  string    `json:"result,omitempty"`
	Started time.Time `json:"started"`
	Seconds float64   `json:"seconds"` // wall time the trial took
	// Headline is the one-line summary shown in progress.
	Headline string `json:"headline,omitempty"`
}

// Plan is plan.json.
type Plan struct {
	Spec    Spec      `json:"spec"`
	Started time.Time `json:"started"`
}

const (
	planFile  = "plan.json"
	trialsDir = "trials"
	tmpDir    = ".tmp"
)

// Store is a run directory.
type Store struct{ Dir string }

// TrialPath is where a trial's files go, without extension.
func (s Store) TrialPath(t Trial) string {
	return filepath.Join(s.Dir, trialsDir, filepath.FromSlash(t.Key()))
}

// TmpPath is a scratch name for a trial's files, without extension.
func (s Store) TmpPath(t Trial) string {
	return filepath.Join(s.Dir, tmpDir, strings.ReplaceAll(t.Key(), "/", "_"))
}

// Done reports whether the trial has a record.
func (s Store) Done(t Trial) bool {
	_, err := os.Stat(s.TrialPath(t) + ".trial.json")
	return err == nil
}

// WritePlan writes plan.json atomically.
func (s Store) WritePlan(p Plan) error {
	return writeJSONAtomic(filepath.Join(s.Dir, planFile), p)
}

// ReadPlan reads plan.json.
func (s Store) ReadPlan() (Plan, error) {
	var p Plan
	b, err := os.ReadFile(filepath.Join(s.Dir, planFile))
	if err != nil {
		return p, err
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("%s: %w", planFile, err)
	}
	return p, nil
}

// WriteRecord writes a trial's record atomically; it is the trial's last file.
func (s Store) WriteRecord(r TrialRecord) error {
	return writeJSONAtomic(s.TrialPath(r.Trial)+".trial.json", r)
}

// ReadRecord reads a trial's record.
func (s Store) ReadRecord(t Trial) (TrialRecord, error) {
	var r TrialRecord
	b, err := os.ReadFile(s.TrialPath(t) + ".trial.json")
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("%s: %w", t.Key(), err)
	}
	return r, nil
}

// CleanTmp removes what an interrupted trial left in the scratch directory.
func (s Store) CleanTmp() error {
	if err := os.RemoveAll(filepath.Join(s.Dir, tmpDir)); err != nil {
		return err
	}
	return os.MkdirAll(filepath.Join(s.Dir, tmpDir), 0o755)
}

// Adopt moves loadgen's scratch output of a trial into place: the histogram
// first, then the result. It returns the result's path relative to the run
// directory, or "" if loadgen wrote none.
func (s Store) Adopt(t Trial) (string, error) {
	tmp, dst := s.TmpPath(t), s.TrialPath(t)
	if _, err := os.Stat(tmp + ".json"); errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(tmp+".hgrm", dst+".hgrm"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if err := os.Rename(tmp+".json", dst+".json"); err != nil {
		return "", err
	}
	return filepath.Rel(s.Dir, dst+".json")
}

// Dataset is everything a run directory holds: the plan, the records, and the
// results they point to.
type Dataset struct {
	Plan    Plan
	Records map[string]TrialRecord // by Trial.Key
	Results map[string]*result.Run // by Trial.Key, for records with a result
}

// Load reads a run directory: the plan, then every planned trial's record and
// result. Trials without a record were not run (yet).
func (s Store) Load() (*Dataset, error) {
	p, err := s.ReadPlan()
	if err != nil {
		return nil, err
	}
	d := &Dataset{Plan: p, Records: map[string]TrialRecord{}, Results: map[string]*result.Run{}}
	for _, t := range p.Spec.Plan() {
		rec, err := s.ReadRecord(t)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		d.Records[t.Key()] = rec
		if rec.Result == "" {
			continue
		}
		r, err := result.ReadFile(filepath.Join(s.Dir, rec.Result))
		if err != nil {
			return nil, err
		}
		d.Results[t.Key()] = r
	}
	return d, nil
}

// writeJSONAtomic writes v as indented JSON to a temporary file beside path and
// renames it into place.
func writeJSONAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'))
}

func writeFileAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return err
	}
	return nil
}

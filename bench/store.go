package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"concbench/internal/result"

	"golang.org/x/sys/unix"
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
//
// A file bench cannot use — cut short, not JSON, of another schema, or another
// trial's — did not come from bench but from outside: a copy cut short, a full
// disk, an editor, another tool. Reading it gives a *DamagedError naming the
// file and what is wrong, and its trial counts as not run (never as failed:
// nothing is known of how it went): a resumed run runs it again, overwriting the
// file, and a report leaves it out and lists the file. A damaged plan.json is an
// error: without it nothing says how the trials were measured. Files of trials
// the plan does not hold (a run resumed with fewer models or repetitions) are
// never read.

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
	FailPeer       = "peer"        // a reference peer could not be run (not installed, did not start)
	// FailNotSteady: the steady-state gate never opened the window — the
	// connections served were still growing at the spec's SteadyTimeout.
	FailNotSteady = "not_steady"
	// FailNoCalibration: an open-loop step at a fraction of the model's peak,
	// whose closed-loop cell measured no throughput to take the fraction of.
	FailNoCalibration = "no_calibration"
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
	// Peer is how bench ran the reference server of a peer:NAME cell; nil for
	// models (loadgen starts their server) and for peer cells that were skipped.
	Peer *PeerRun `json:"peer,omitempty"`
}

// Plan is plan.json.
type Plan struct {
	Spec    Spec      `json:"spec"`
	Started time.Time `json:"started"`
	// Extra are the adaptive repetitions added so far (Spec.RepeatAuto), in
	// the order they run, after the spec's own trials.
	Extra []Trial `json:"extra,omitempty"`
}

// Trials are the plan's trials: the spec's, then the extra ones.
func (p Plan) Trials() []Trial { return append(p.Spec.Plan(), p.Extra...) }

const (
	planFile  = "plan.json"
	trialsDir = "trials"
	tmpDir    = ".tmp"
)

// Store is a run directory.
type Store struct{ Dir string }

// DamagedError is a file of a run directory that bench cannot use (see above).
type DamagedError struct {
	Path string // the file, under Store.Dir
	Why  string // what is wrong with it
}

func (e *DamagedError) Error() string { return e.Path + ": " + e.Why }

// decodeJSON reads the JSON file path into v, which names what the file should
// be ("trial record"). A file that is not one JSON value of v's shape is a
// *DamagedError; a file that cannot be read is the read's error.
func decodeJSON(path, what string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	err = dec.Decode(v)
	if err == nil && dec.Decode(&json.RawMessage{}) != io.EOF {
		return &DamagedError{path, fmt.Sprintf("not one JSON value: more data after byte %d", dec.InputOffset())}
	}
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF):
		return &DamagedError{path, "empty"}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &DamagedError{path, fmt.Sprintf("cut short: the JSON ends mid-value after %d bytes", len(b))}
	case errors.As(err, &syntax):
		return &DamagedError{path, fmt.Sprintf("not JSON: %v at byte %d", err, syntax.Offset)}
	case errors.As(err, &typ):
		return &DamagedError{path, fmt.Sprintf("not a %s: %v", what, err)}
	}
	return &DamagedError{path, fmt.Sprintf("not a %s: %v", what, err)}
}

// TrialPath is where a trial's files go, without extension.
func (s Store) TrialPath(t Trial) string {
	return filepath.Join(s.Dir, trialsDir, filepath.FromSlash(t.Key()))
}

// TmpPath is a scratch name for a trial's files, without extension: a
// directory per cell in tmpDir, and the repetition's name as in TrialPath, so
// that the file names a result gives of its own files (its histogram) hold
// once Adopt has moved them.
func (s Store) TmpPath(t Trial) string {
	return filepath.Join(s.Dir, tmpDir, strings.ReplaceAll(t.Cell.Key(), "/", "_"), t.RepName())
}

// Done reports whether the trial has a usable record (see Check).
func (s Store) Done(t Trial) bool {
	done, _ := s.Check(t)
	return done
}

// Check reports whether the trial is done: its record and the result the record
// names can be read and are the trial's. A trial with a damaged file is not done,
// and the error is a *DamagedError saying which file and why; other errors
// (permissions, I/O) are returned as they are. No record is not done, no error.
func (s Store) Check(t Trial) (bool, error) {
	rec, err := s.ReadRecord(t)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if rec.Result != "" {
		if _, err := s.ReadResult(rec); err != nil {
			return false, err
		}
	}
	return true, nil
}

// WritePlan writes plan.json atomically.
func (s Store) WritePlan(p Plan) error {
	return writeJSONAtomic(filepath.Join(s.Dir, planFile), p)
}

// ReadPlan reads plan.json; one that is not a plan is a *DamagedError.
func (s Store) ReadPlan() (Plan, error) {
	var p Plan
	path := filepath.Join(s.Dir, planFile)
	if err := decodeJSON(path, "bench plan", &p); err != nil {
		return p, err
	}
	if len(p.Spec.Models) == 0 || p.Spec.Repeat < 1 {
		return p, &DamagedError{path, "not a bench plan: it plans no trials (no models or no repetitions)"}
	}
	return p, nil
}

// WriteRecord writes a trial's record atomically; it is the trial's last file.
func (s Store) WriteRecord(r TrialRecord) error {
	return writeJSONAtomic(s.TrialPath(r.Trial)+".trial.json", r)
}

// ReadRecord reads a trial's record; one that is not a record of t is a
// *DamagedError.
func (s Store) ReadRecord(t Trial) (TrialRecord, error) {
	var r TrialRecord
	path := s.TrialPath(t) + ".trial.json"
	if err := decodeJSON(path, "trial record", &r); err != nil {
		return r, err
	}
	switch {
	case r.Cell.Model == "" || r.Rep < 1:
		return r, &DamagedError{path, "not a trial record: it names no trial"}
	case r.Key() != t.Key():
		return r, &DamagedError{path, fmt.Sprintf("the record of trial %s, not of %s", r.Key(), t.Key())}
	case r.Status != StatusOK && r.Status != StatusFailed && r.Status != StatusSkipped:
		return r, &DamagedError{path, fmt.Sprintf("not a trial record: status %q", r.Status)}
	}
	return r, nil
}

// ReadResult reads the loadgen result a record names. One that is missing, is
// not a result of this build's schema, or is the result of another workload or
// model is a *DamagedError.
func (s Store) ReadResult(rec TrialRecord) (*result.Run, error) {
	path := filepath.Join(s.Dir, filepath.FromSlash(rec.Result))
	var r result.Run
	err := decodeJSON(path, "loadgen result", &r)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &DamagedError{path, "missing: the trial's record names it as its result"}
	}
	if err != nil {
		return nil, err
	}
	if r.Schema < result.OldestSchema || r.Schema > result.SchemaVersion {
		if r.Schema == 0 {
			return nil, &DamagedError{path, "not a loadgen result: no schema version"}
		}
		return nil, &DamagedError{path, fmt.Sprintf("a loadgen result of schema %d: this build reads %d to %d", r.Schema, result.OldestSchema, result.SchemaVersion)}
	}
	c, w := rec.Cell, r.Config.Workload
	if w.Proto == "" {
		w.Proto = "echo"
	}
	if w.Conns == 0 {
		w.Conns = 1
	}
	if w.Proto != c.Proto || w.Conns != c.Conns || w.Reconnect != c.Reconnect || (!IsPeer(c.Model) && r.Config.Model != BaseModel(c.Model)) {
		return nil, &DamagedError{path, fmt.Sprintf("the result of another trial: model %q, %s, c=%d, reconnect %v", r.Config.Model, w.Proto, w.Conns, w.Reconnect)}
	}
	return &r, nil
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
	// Damaged are the planned trials' files that could not be used, in plan
	// order; their trials have no record here: they count as not run.
	Damaged []*DamagedError
	// Calibration is the run's calibration of the instrument (calibration.json);
	// nil for a run that has none (one from before it, or run without it).
	Calibration *Calibration
}

// Load reads a run directory: the plan, then every planned trial's record and
// result. Trials without a record were not run (yet); those with a damaged
// record or result are left out too, and the file listed in Damaged. A damaged
// plan.json is an error (a *DamagedError).
func (s Store) Load() (*Dataset, error) {
	p, err := s.ReadPlan()
	if err != nil {
		return nil, err
	}
	d := &Dataset{Plan: p, Records: map[string]TrialRecord{}, Results: map[string]*result.Run{}}
	for _, t := range p.Trials() {
		rec, err := s.ReadRecord(t)
		var r *result.Run
		if err == nil && rec.Result != "" {
			r, err = s.ReadResult(rec)
		}
		var damaged *DamagedError
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case errors.As(err, &damaged):
			d.Damaged = append(d.Damaged, damaged)
			continue
		case err != nil:
			return nil, err
		}
		d.Records[t.Key()] = rec
		if r != nil {
			d.Results[t.Key()] = r
		}
	}
	if d.Calibration, err = ReadCalibration(s.Dir); err != nil {
		return nil, err
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
	// CreateTemp makes the file 0600; a report and its tables are for anyone.
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		os.Remove(f.Name())
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

// lockFile, in a run directory, is held (flock) by the bench writing to it.
const lockFile = ".lock"

// ErrBusy is returned by Lock when another bench holds the run directory.
var ErrBusy = errors.New("in use by another bench")

// Lock takes the run directory for this process, so two benches cannot
// interleave their trials and reports in one directory; the directory must
// exist. It fails at once with ErrBusy (naming the holder's pid) if another
// process holds it. The lock is an flock on Dir/.lock: the kernel drops it when
// its holder exits, however it exits, so a crashed bench never leaves the
// directory locked. unlock releases it.
func (s Store) Lock() (unlock func(), err error) {
	path := filepath.Join(s.Dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := io.ReadAll(io.LimitReader(f, 32))
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			who := ""
			if pid := strings.TrimSpace(string(holder)); pid != "" {
				who = " (pid " + pid + ")"
			}
			return nil, fmt.Errorf("%s: %w%s: wait for it to finish or give another -out", s.Dir, ErrBusy, who)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		fmt.Fprintf(f, "%d\n", os.Getpid())
	}
	return func() { f.Close() }, nil
}

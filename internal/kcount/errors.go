package kcount

import (
	"errors"
	"fmt"
)

// ErrUnavailable is wrapped by every error that means "this machine cannot count":
// a caller tests errors.Is(err, ErrUnavailable) and reports the result as not
// measured, with err's text as the reason, instead of showing zeros.
var ErrUnavailable = errors.New("kernel counters unavailable")

// ErrNotEmpty is wrapped by Remove's error when the cgroup still holds processes.
var ErrNotEmpty = errors.New("cgroup still holds processes")

// Cause says which precondition of counting is missing.
type Cause int

// The causes of an UnavailableError.
const (
	NoPermission Cause = iota + 1 // BPF refused us (root, or CAP_BPF and CAP_PERFMON, needed)
	NoCgroup2                     // no cgroup v2 mount, or this process's v2 cgroup is not under it
	CgroupCreate                  // the cgroup directory could not be made or opened
	NoBPF                         // the kernel lacks what the counting takes (BPF raw tracepoints, 5.18's sched_switch)
)

var causeNames = map[Cause]string{
	NoPermission: "no permission",
	NoCgroup2:    "no cgroup v2",
	CgroupCreate: "cannot create cgroup",
	NoBPF:        "kernel without what counting takes",
}

func (c Cause) String() string {
	if s, ok := causeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("Cause(%d)", int(c))
}

// UnavailableError says why counting is unavailable. Its text is meant to follow
// "not measured: " and names what would fix it where we know.
type UnavailableError struct {
	Cause  Cause
	Detail string // what was tried and what would fix it
	Err    error  // the underlying error, if any
}

func (e *UnavailableError) Error() string {
	s := e.Cause.String() + ": " + e.Detail
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap gives both ErrUnavailable and the underlying error, so errors.Is works
// for the sentinel and for the cause (fs.ErrPermission, unix.EACCES, ...).
func (e *UnavailableError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrUnavailable}
	}
	return []error{ErrUnavailable, e.Err}
}

func unavailable(c Cause, err error, format string, args ...any) error {
	return &UnavailableError{Cause: c, Detail: fmt.Sprintf(format, args...), Err: err}
}

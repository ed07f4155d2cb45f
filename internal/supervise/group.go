package supervise

// Process groups: what is left of one after its leader exited is swept with
// SIGKILL, and its members are found in /proc.

import (
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"concbench/internal/procstat"
)

// groupGone is how long KillGroup waits for a killed group to be gone.
const groupGone = 2 * time.Second

// KillGroup SIGKILLs whatever is left of process group pgid and waits (up to
// 2 s) until it is gone; it reports whether anything was left.
func KillGroup(pgid int) bool {
	if !GroupAlive(pgid) {
		return false
	}
	unix.Kill(-pgid, unix.SIGKILL)
	// Nothing announces the end of a process that is not our child: poll.
	for deadline := time.Now().Add(groupGone); time.Now().Before(deadline) && GroupAlive(pgid); {
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// GroupAlive reports whether process group pgid has a member that is not a
// zombie. Orphans of the group are reaped by init (or this machine's PID 1),
// which may take its time; a zombie holds nothing but its pid.
func GroupAlive(pgid int) bool {
	if unix.Kill(-pgid, 0) == unix.ESRCH {
		return false
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited between the listing and the read
		}
		if s, err := procstat.ParseStat(b); err == nil && s.PGRP == pgid && s.State != 'Z' && s.State != 'X' {
			return true
		}
	}
	return false
}

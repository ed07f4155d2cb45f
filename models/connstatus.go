package models

// How a connection served by a worker process ended, as its exit status (fork) or
// the status byte it sends its parent (procpool), and how the parent counts it.

// Exit statuses of a worker process. 1 and 2 are left to the Go runtime (fatal
// errors, panics) and 66 to the race detector, so a crash is not read as a result.
const (
	exitOK           = 0
	exitProtoError   = 3 // the connection was closed for malformed input
	exitIOError      = 4 // the connection was closed by a read or write error
	exitSetup        = 5 // the worker could not start: bad role, config or descriptors
	exitIdle         = 6 // the connection was closed for idleness (Config.IdleTimeout)
	exitOutputCapped = 7 // the connection was closed for owing too much (Config.MaxOutput)
)

// connStatus is how one connection served by a worker ended. It is also the byte a
// procpool worker writes to say it is free again.
type connStatus byte

const (
	connOK connStatus = iota
	connProtoError
	connIOError
	connIdle         // no byte read or written for Config.IdleTimeout
	connOutputCapped // one Feed's replies above Config.MaxOutput
)

func (s connStatus) exitCode() int {
	switch s {
	case connProtoError:
		return exitProtoError
	case connIOError:
		return exitIOError
	case connIdle:
		return exitIdle
	case connOutputCapped:
		return exitOutputCapped
	}
	return exitOK
}

// exitStatus is the connStatus a fork child's exit code stands for, and false for a
// code that is none (a crash, a setup failure).
func exitStatus(code int) (connStatus, bool) {
	switch code {
	case exitOK:
		return connOK, true
	case exitProtoError:
		return connProtoError, true
	case exitIOError:
		return connIOError, true
	case exitIdle:
		return connIdle, true
	case exitOutputCapped:
		return connOutputCapped, true
	}
	return connOK, false
}

// countEnd adds a finished connection's outcome to st, without closing it there.
func (s connStatus) countEnd(st *Stats) {
	switch s {
	case connProtoError:
		st.protoErrors.Add(1)
	case connIOError:
		st.ioErrors.Add(1)
	case connIdle:
		st.idleClosed.Add(1)
	case connOutputCapped:
		st.outputCapped.Add(1)
	}
}

// count adds a finished connection's outcome to st and counts it closed (it was
// counted as opened when it was handed to the worker).
func (s connStatus) count(st *Stats) {
	s.countEnd(st)
	st.done()
}

package kcount

import "golang.org/x/sys/unix"

// syscallNumbers maps the names a Counter may be asked for to this
// architecture's syscall numbers.
var syscallNumbers = map[string]int{
	"read": unix.SYS_READ, "recvfrom": unix.SYS_RECVFROM, "recvmsg": unix.SYS_RECVMSG, "readv": unix.SYS_READV,
	"write": unix.SYS_WRITE, "sendto": unix.SYS_SENDTO, "sendmsg": unix.SYS_SENDMSG, "writev": unix.SYS_WRITEV,
	"sendfile": unix.SYS_SENDFILE, "splice": unix.SYS_SPLICE,
	"epoll_wait": unix.SYS_EPOLL_WAIT, "epoll_pwait": unix.SYS_EPOLL_PWAIT, "epoll_pwait2": unix.SYS_EPOLL_PWAIT2, "epoll_ctl": unix.SYS_EPOLL_CTL,
	"poll": unix.SYS_POLL, "ppoll": unix.SYS_PPOLL, "select": unix.SYS_SELECT, "pselect6": unix.SYS_PSELECT6,
	"accept": unix.SYS_ACCEPT, "accept4": unix.SYS_ACCEPT4, "close": unix.SYS_CLOSE,
	"futex": unix.SYS_FUTEX, "clone": unix.SYS_CLONE, "clone3": unix.SYS_CLONE3, "execve": unix.SYS_EXECVE, "wait4": unix.SYS_WAIT4,
	"nanosleep": unix.SYS_NANOSLEEP, "clock_nanosleep": unix.SYS_CLOCK_NANOSLEEP,
	"io_uring_enter": unix.SYS_IO_URING_ENTER, "sched_yield": unix.SYS_SCHED_YIELD,
	"recvmmsg": unix.SYS_RECVMMSG, "sendmmsg": unix.SYS_SENDMMSG,
	"getppid": unix.SYS_GETPPID, "openat": unix.SYS_OPENAT,
}

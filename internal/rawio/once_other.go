//go:build !amd64

package rawio

import "golang.org/x/sys/unix"

// once makes one read-like or write-like call (read, write, recvfrom, sendto:
// descriptor, buffer, length, flags; the address arguments nil) without the
// runtime's syscall path, retrying EINTR. (amd64 has its own, once_amd64.go.)
func once(trap uintptr, fd int, p []byte, flags uintptr) (int, error) {
	for {
		n, _, e := unix.RawSyscall6(trap, uintptr(fd), uintptr(bufPtr(p)), uintptr(len(p)), flags, 0, 0)
		if e != unix.EINTR {
			if e != 0 {
				return -1, errno(e)
			}
			return int(n), nil
		}
	}
}

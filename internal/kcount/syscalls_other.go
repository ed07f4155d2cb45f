//go:build !amd64 && !arm64

package kcount

// syscallNumbers is empty on the architectures without a table: every name is
// unavailable, and every syscall counts in the total (Snapshot.Other).
var syscallNumbers = map[string]int{}

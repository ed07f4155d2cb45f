// Package curing holds curing.c, a single-threaded io_uring server in C on
// liburing for the echo and rpc protocols: the reference peer (peer:uring) that
// the Go model uring is compared with, built the same way so that the
// comparison isolates the language and its runtime. It is not a model and not
// ours to tune. The package has no Go code besides its test, which builds the C
// file with cc and checks it with internal/peertest.
package curing

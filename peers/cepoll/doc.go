// Package cepoll holds cepoll.c, a single-threaded level-triggered epoll server in C
// for the echo and rpc protocols: a reference peer that shows the one-core limit a
// Go model can be compared with. It is not a model and not ours to tune; see
// README.md. The package has no Go code besides its test, which builds the C file
// with cc and checks it against the wire formats of concbench/internal/proto.
package cepoll

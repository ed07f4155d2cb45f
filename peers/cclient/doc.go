// Package cclient holds cclient.c, a minimal single-threaded closed-loop load
// generator in C for the echo and rpc protocols: the floor bench's calibration
// measures loadgen's own cost per request against. It is not ours to tune; see
// the comment at the top of cclient.c. The package has no Go code besides its
// test, which builds the C file with cc and runs it against a Go server of the
// wire formats of concbench/internal/proto.
package cclient

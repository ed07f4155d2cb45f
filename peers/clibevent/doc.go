// Package clibevent holds clibevent.c, a single-threaded libevent server in C
// (event_base, evconnlistener, bufferevent) for the echo and rpc protocols: the
// reference peer peer:libevent, the library form of the reactor that
// models/reactor.go writes by hand. It is not a model and not ours to tune. The
// package has no Go code besides its test, which builds the C file with cc and
// checks it with internal/peertest.
package clibevent

// Package modeltest starts a concbench server in a test's own process, for
// the tests of packages that drive one (loadgen, loadgen/merge).
package modeltest

import (
	"context"
	"testing"

	"concbench/models"
)

// Serve runs models.Server with cfg (Addr "" means 127.0.0.1:0) in this
// process until the test ends, and returns the address it listens on. A
// server that fails to start fails the test; one that does not stop cleanly
// at the end is reported as an error.
func Serve(t testing.TB, cfg models.Config) string {
	t.Helper()
	return ServeServer(t, &models.Server{Config: cfg})
}

// ServeServer is Serve of srv as given (AllowRemote, say); its OnListen is
// Serve's own.
func ServeServer(t testing.TB, srv *models.Server) string {
	t.Helper()
	if srv.Config.Addr == "" {
		srv.Config.Addr = "127.0.0.1:0"
	}
	addrc := make(chan string, 1)
	srv.OnListen = func(a string) { addrc <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case addr := <-addrc:
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("server: %v", err)
			}
		})
		return addr
	case err := <-done:
		cancel()
		t.Fatalf("server %s: %v", srv.Config.Model, err)
		return ""
	}
}

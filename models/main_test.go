package models_test

import (
	"os"
	"strings"
	"testing"

	"concbench/models"
)

// TestMain lets this test binary act as a worker: the process models re-execute
// /proc/self/exe, which under go test is the test binary, not the server.
//
// Under -race a process sleeps atexit_sleep_ms (1s by default) before it exits, so
// that late races get reported; a fork child exits per connection, so children get
// no sleep (races in them are still reported, with exit status 66).
func TestMain(m *testing.M) {
	models.RunWorkerIfChild()
	if !strings.Contains(os.Getenv("GORACE"), "atexit_sleep_ms") {
		os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	}
	os.Exit(m.Run())
}

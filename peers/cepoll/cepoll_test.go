package cepoll

import (
	"testing"

	"concbench/internal/cbuild"
	"concbench/internal/peertest"
)

// TestCepoll builds cepoll.c (cbuild: the Makefile's flags plus -Werror) and
// runs the peers' checks against it.
func TestCepoll(t *testing.T) { peertest.Run(t, cbuild.Build(t, "cepoll.c")) }

package curing

import (
	"testing"

	"concbench/internal/cbuild"
	"concbench/internal/peertest"
)

// TestCuring builds curing.c against liburing (skipped with the reason where
// liburing-dev is missing) and runs the peers' checks against it.
func TestCuring(t *testing.T) { peertest.Run(t, cbuild.Build(t, "curing.c", cbuild.Liburing)) }

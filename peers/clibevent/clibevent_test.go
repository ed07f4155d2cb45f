package clibevent

import (
	"testing"

	"concbench/internal/cbuild"
	"concbench/internal/peertest"
)

// TestClibevent builds clibevent.c against libevent (skipped with the reason
// where libevent-dev is missing) and runs the peers' checks against it.
func TestClibevent(t *testing.T) { peertest.Run(t, cbuild.Build(t, "clibevent.c", cbuild.Libevent)) }

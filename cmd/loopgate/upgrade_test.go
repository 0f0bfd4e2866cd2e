package main

import (
	"net"
	"strings"
	"testing"
)

// TestUpgradeCommandErrors: usage mistakes exit 2, an admin endpoint that
// does not answer exits 1 and says what to check.
func TestUpgradeCommandErrors(t *testing.T) {
	if code, _, errOut := runCapture("upgrade", "extra"); code != exitUsage || !strings.Contains(errOut, `unexpected argument "extra"`) {
		t.Errorf("upgrade extra: exit %d, %q", code, errOut)
	}
	if code, _, errOut := runCapture("upgrade", "--admin", "nonsense"); code != exitUsage || !strings.Contains(errOut, "want HOST:PORT") {
		t.Errorf("upgrade --admin nonsense: exit %d, %q", code, errOut)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	code, _, errOut := runCapture("upgrade", "--admin", addr, "--timeout", "5s")
	if code != exitFailure || !strings.Contains(errOut, "is `loopgate serve` running with --admin "+addr) {
		t.Errorf("upgrade with no serve: exit %d, %q", code, errOut)
	}
}

// Package bpftest holds the test suites' rule for tests that need the eBPF
// sockmap fast path, so every package outside bpf applies the same one.
// (The bpf package's own tests keep a copy: they cannot import this package
// without an import cycle.)
package bpftest

import (
	"errors"
	"os"
	"testing"

	"github.com/loopgate/loopgate/bpf"
)

// Require skips the test when this host cannot run the sockmap fast path,
// naming the reason; with LOOPGATE_REQUIRE_BPF=1 (CI) it fails instead, so
// an unsupported runner cannot pass the suite silently. A probe that failed
// without saying anything about support fails the test.
func Require(tb testing.TB) {
	tb.Helper()
	err := bpf.Probe()
	if err == nil {
		return
	}
	if !errors.Is(err, bpf.ErrNotSupported) {
		tb.Fatalf("probing sockmap support: %v", err)
	}
	if os.Getenv("LOOPGATE_REQUIRE_BPF") == "1" {
		tb.Fatalf("LOOPGATE_REQUIRE_BPF=1 but sockmap acceleration is unavailable: %v", err)
	}
	tb.Skip(err)
}

package suites

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/loopgatetest"
)

const wsechoPkg = "./internal/wsecho"

func TestMain(m *testing.M) { loopgatetest.Main(m, wsechoPkg) }

// missing skips t for want of a tool, or fails it when CI requires the
// suites (LOOPGATE_REQUIRE_SUITES=1).
func missing(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("LOOPGATE_REQUIRE_SUITES") == "1" {
		t.Fatalf(format+" (LOOPGATE_REQUIRE_SUITES=1)", args...)
	}
	t.Skipf(format, args...)
}

// writeWebConfig writes dir/web.config for processPath and arguments
// with the given extra aspNetCore attributes.
func writeWebConfig(t *testing.T, dir, processPath, arguments, attrs string) {
	t.Helper()
	cfg := fmt.Sprintf(`<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <system.webServer>
    <aspNetCore processPath=%q arguments=%q shutdownTimeLimit="3" startupTimeLimit="20" %s />
  </system.webServer>
</configuration>
`, processPath, arguments, attrs)
	if err := os.WriteFile(filepath.Join(dir, "web.config"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

// startLoopgate starts loopgate serve on 127.0.0.1 with an info-level log
// (see loopgatetest.Start).
func startLoopgate(t *testing.T, args ...string) *loopgatetest.Process {
	t.Helper()
	return loopgatetest.Start(t, loopgatetest.Options{
		Args:         append([]string{"--log-level", "info"}, args...),
		ReadyTimeout: 15 * time.Second,
	})
}

// logged reports whether loopgate logged a line whose message contains s.
func logged(l *loopgatetest.Process, s string) bool {
	return l.Count(func(x loopgatetest.Line) bool { return strings.Contains(x.Str("message"), s) }) > 0
}

// Package gobuild builds this module's programs for tests, benchmarks and
// the soak run: loopgate itself, the example app and the test backends.
// It is the one way they are built, static (CGO_ENABLED=0) like the binary
// the Makefile ships. Nothing at run time uses it.
package gobuild

import (
	"fmt"
	"os"
	"os/exec"
)

// Build compiles pkg (an import path, or a path relative to the current
// directory) into the executable out. The compiler's output is in the error.
func Build(out, pkg string) error { return BuildWith(out, pkg) }

// BuildWith is Build with more `go build` flags before the package, e.g.
// "-ldflags", "-X main.version=v2".
func BuildWith(out, pkg string, flags ...string) error {
	args := append(append([]string{"build", "-o", out}, flags...), pkg)
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

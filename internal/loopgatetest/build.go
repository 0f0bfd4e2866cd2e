package loopgatetest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/loopgate/loopgate/internal/gobuild"
)

const loopgatePkg = "github.com/loopgate/loopgate/cmd/loopgate"

// Set once by Main before any test runs and only read afterwards, so safe
// for concurrent use by parallel tests.
var (
	built    = map[string]string{} // package as given to Main -> executable
	buildErr error
)

// Main is a TestMain body: it builds loopgate and each of programs
// (package paths, relative to the test's directory or full import paths)
// into a fresh temporary directory, never into the repository, runs the
// tests, removes the directory and exits with the tests' status. A build
// failure does not stop the run: Loopgate and Program report it to each
// test that needs a binary, so tests that need none still run.
func Main(m *testing.M, programs ...string) {
	dir, err := os.MkdirTemp("", "loopgatetest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for i, pkg := range append([]string{loopgatePkg}, programs...) {
		// A directory each keeps the program's own name (its comm in
		// /proc) even when two packages end in the same element.
		out := filepath.Join(dir, fmt.Sprint(i), filepath.Base(pkg))
		if buildErr = os.Mkdir(filepath.Dir(out), 0o755); buildErr == nil {
			buildErr = gobuild.Build(out, pkg)
		}
		if buildErr != nil {
			break
		}
		built[pkg] = out
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Loopgate returns the path of the loopgate binary Main built, failing t
// if the build failed.
func Loopgate(t testing.TB) string {
	t.Helper()
	return Program(t, loopgatePkg)
}

// Program returns the path of the executable Main built from pkg (spelled
// as it was given to Main), failing t if the build failed.
func Program(t testing.TB, pkg string) string {
	t.Helper()
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	out, ok := built[pkg]
	if !ok {
		t.Fatalf("loopgatetest: %s was not built (not given to loopgatetest.Main)", pkg)
	}
	return out
}

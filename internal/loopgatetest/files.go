package loopgatetest

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// CopyDir copies the regular files of src (not its subdirectories), but
// for those named in skip, into a new temporary directory and returns it,
// so a test never writes into the repository.
func CopyDir(t testing.TB, src string, skip ...string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || slices.Contains(skip, e.Name()) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

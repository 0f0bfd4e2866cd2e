package configload

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary files, virtual paths and environments to Parse.
// It must never panic; a spec it accepts must re-validate; the same inputs
// must give the same result; every problem must be located in the file.
// The Makefile runs it for a few seconds; run it longer by hand with
// go test -run '^$' -fuzz '^FuzzParse$' -fuzztime 10m ./configload
func FuzzParse(f *testing.F) {
	err := filepath.WalkDir("testdata", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path == filepath.Join("testdata", "fuzz") {
			return filepath.SkipDir // the fuzzer's own corpus seeds itself
		}
		if d.IsDir() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f.Add(data, "/", "")
		f.Add(data, "/api/", "HOME=/home\nWHO=w\nANCM_PREFER_ENVIRONMENT_VARIABLES=1\nASPNETCORE_ENVIRONMENT=x")
		f.Add(data, "", "ANCM_LAUNCHER_PATH=./run.exe\nANCM_LAUNCHER_ARGS=\"a b\" %ASPNETCORE_PORT%\nASPNETCORE_MODULE_DEBUG=file")
		return nil
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`<configuration><system.webServer><aspNetCore processPath="%%%A%%" arguments="\\&quot;%%"/></system.webServer></configuration>`), "/a?", "A=%")
	f.Fuzz(func(t *testing.T, data []byte, vpath, env string) {
		opts := Options{VirtualPath: vpath, Environ: strings.Split(env, "\n")}
		spec, err := Parse(testFile, data, opts)
		again, err2 := Parse(testFile, data, opts)
		if (err == nil) != (err2 == nil) {
			t.Fatalf("two parses disagree: %v / %v", err, err2)
		}
		lines := bytes.Count(data, []byte("\n")) + 1
		if err != nil {
			if err.Error() != err2.Error() {
				t.Fatalf("two parses give different errors:\n%v\n%v", err, err2)
			}
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v (%T) is not an *Error", err, err)
			}
			if e.Errors() == 0 {
				t.Fatalf("refused with warnings only: %v", err)
			}
			for _, p := range e.Problems {
				checkProblem(t, p, lines)
			}
			return
		}
		if verr := spec.Validate(); verr != nil {
			t.Fatalf("accepted spec does not validate: %v\n%+v", verr, spec)
		}
		if !spec.Equal(again) || !reflect.DeepEqual(spec.Warnings, again.Warnings) {
			t.Fatalf("two parses of the same input differ:\n%+v\n%+v", spec, again)
		}
		for _, w := range spec.Warnings {
			if !w.Warning {
				t.Fatalf("warning without Warning: %v", w)
			}
			checkProblem(t, w, lines)
		}
	})
}

func checkProblem(t *testing.T, p Problem, lines int) {
	t.Helper()
	if p.Rule == "" || (p.File != testFile && p.Attr != "virtual path") || p.Line < 0 || p.Line > lines {
		t.Fatalf("problem not located in a %d-line file: %#v", lines, p)
	}
}

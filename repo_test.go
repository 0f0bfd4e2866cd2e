// Repository-wide rules: every package says what it owns, and packages do
// not reach around each other (DESIGN.md §2).
package loopgate_test

import (
	"encoding/json"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/loopgate/loopgate"

type listedPackage struct {
	ImportPath string
	Dir        string
	Name       string
	GoFiles    []string
	Imports    []string
	Deps       []string
}

func listPackages(t *testing.T) []listedPackage {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []listedPackage
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p listedPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		t.Fatal("go list found no packages")
	}
	return pkgs
}

// TestPackageDocs fails for any package without a package doc comment.
func TestPackageDocs(t *testing.T) {
	for _, p := range listPackages(t) {
		if len(p.GoFiles) == 0 {
			continue
		}
		fset := token.NewFileSet()
		documented := false
		for _, f := range p.GoFiles {
			file, err := parser.ParseFile(fset, p.Dir+"/"+f, nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if file.Doc != nil && strings.TrimSpace(file.Doc.Text()) != "" {
				documented = true
				break
			}
		}
		if !documented {
			t.Errorf("package %s has no package doc comment (add a doc.go saying what it owns)", p.ImportPath)
		}
	}
}

// TestPackageBoundaries enforces DESIGN.md §2: configload is pure,
// supervisor never reaches into the forwarder, only fastpath (and the
// app-side pairing middleware, the examples and benchmarks) touch fasthttp,
// and only bpf touches cilium/ebpf.
func TestPackageBoundaries(t *testing.T) {
	pkgs := map[string]listedPackage{}
	for _, p := range listPackages(t) {
		pkgs[p.ImportPath] = p
	}
	// Transitive rules: what a package may not depend on at all.
	forbidden := map[string][]string{
		module + "/configload": {module + "/supervisor", module + "/fastpath", module + "/bpf", "github.com/valyala/fasthttp", "net/http", "os/exec"},
		module + "/supervisor": {module + "/fastpath", "github.com/valyala/fasthttp", "github.com/cilium/ebpf"},
		module + "/pairing":    {module + "/supervisor", module + "/fastpath", module + "/bpf"},
		module + "/bpf":        {module + "/supervisor", module + "/fastpath", "github.com/valyala/fasthttp"},
		// The shared test backend is an app: it knows loopgate only
		// through the hosting contract (pairing), so it cannot test
		// loopgate against loopgate's own code.
		// The cgroup and keeper code serves the supervisor and the eBPF
		// loader alike, so it may depend on neither.
		module + "/internal/cgroup":      {module + "/supervisor", module + "/fastpath", module + "/bpf", "github.com/valyala/fasthttp"},
		module + "/internal/testbackend": {module + "/supervisor", module + "/fastpath", module + "/bpf", module + "/internal/loopgatetest", "github.com/valyala/fasthttp"},
	}
	for pkg, bad := range forbidden {
		for _, d := range pkgs[pkg].Deps {
			for _, b := range bad {
				if d == b || strings.HasPrefix(d, b+"/") {
					t.Errorf("%s must not depend on %s", pkg, d)
				}
			}
		}
	}
	// Direct rules: who may import a library itself.
	owners := map[string]func(pkg string) bool{
		"github.com/cilium/ebpf": func(pkg string) bool { return strings.HasPrefix(pkg, module+"/bpf") },
		// Test support: imported by tests only (p.Imports lists none of them).
		module + "/internal/loopgatetest": func(string) bool { return false },
		// The socket layer under the forwarder.
		module + "/internal/sockio": func(pkg string) bool { return pkg == module+"/fastpath" },
		// gRPC is for the example app, the tests and the benchmarks: the
		// forwarder speaks HTTP/2 with net/http and never imports it.
		"google.golang.org/grpc": func(pkg string) bool {
			return strings.HasPrefix(pkg, module+"/examples") || strings.HasPrefix(pkg, module+"/bench")
		},
		"github.com/valyala/fasthttp": func(pkg string) bool {
			for _, ok := range []string{"/fastpath", "/pairing", "/bench", "/examples"} {
				if strings.HasPrefix(pkg, module+ok) {
					return true
				}
			}
			return false
		},
	}
	for _, p := range pkgs {
		for _, imp := range p.Imports {
			for lib, allowed := range owners {
				if (imp == lib || strings.HasPrefix(imp, lib+"/")) && !allowed(p.ImportPath) {
					t.Errorf("%s imports %s directly; that library belongs to another package", p.ImportPath, imp)
				}
			}
		}
	}
}

// TestMakeBuildSaysItIsBuilding: `make run` starts with `make build`, whose
// first (cold) build is silent for minutes otherwise. GO=true stands in for
// the go command, so the test builds nothing.
func TestMakeBuildSaysItIsBuilding(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not installed")
	}
	bin := t.TempDir() + "/loopgate"
	build := func() string {
		out, err := exec.Command("make", "--no-print-directory", "build", "BIN="+bin, "GO=true").CombinedOutput()
		if err != nil {
			t.Fatalf("make build: %v\n%s", err, out)
		}
		return string(out)
	}
	want := "building " + bin + ": the first build downloads and compiles the dependencies and can take a few minutes\n"
	if out := build(); !strings.HasPrefix(out, want) {
		t.Errorf("first make build printed:\n%s\nwant it to start with:\n%s", out, want)
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil { // as a first build leaves it
		t.Fatal(err)
	}
	if out := build(); strings.Contains(out, "building ") {
		t.Errorf("a rebuild printed:\n%s", out)
	}
}

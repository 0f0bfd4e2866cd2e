package bpf

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
)

// TestGeneratedObjectsMatchSource regenerates the bpf2go output from
// sockmap.c with the exact command in gen.go and compares it with the
// committed files, so a change to the C source cannot ship without its
// object. The object is compared byte for byte; clang embeds nothing
// time- or path-dependent (sources are named relative to this directory),
// but another clang release may lay out BTF differently, so when the
// bytes differ the programs' instructions and the map definitions are
// compared instead, and only a difference there fails.
func TestGeneratedObjectsMatchSource(t *testing.T) {
	for _, tool := range []string{"clang", "llvm-strip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install clang llvm libbpf-dev, or make bpf-deps): cannot regenerate", tool)
		}
	}
	args := generateArgs(t)
	out := t.TempDir()
	// "go run <pkg> [bpf2go flags] ..." : insert -output-dir among the flags.
	cmdArgs := append([]string{}, args[1:3]...)
	cmdArgs = append(cmdArgs, "-output-dir", out)
	cmdArgs = append(cmdArgs, args[3:]...)
	cmd := exec.Command(args[0], cmdArgs...)
	cmd.Env = append(os.Environ(), "GOPACKAGE=bpf", "GOFILE=gen.go")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, msg)
	}

	for _, name := range []string{"sockmap_bpfel.go", "sockmap_bpfel.o"} {
		committed, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		fresh, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(committed, fresh) {
			continue
		}
		if strings.HasSuffix(name, ".o") && sameObject(t, name, filepath.Join(out, name)) {
			t.Logf("%s differs in bytes but not in instructions or maps (different clang?); not failing", name)
			continue
		}
		t.Errorf("committed %s does not match sockmap.c; run make generate and commit the result", name)
	}
}

// generateArgs returns the command of the //go:generate line in gen.go.
func generateArgs(t *testing.T) []string {
	src, err := os.ReadFile("gen.go")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(src), "\n") {
		if cmd, ok := strings.CutPrefix(line, "//go:generate "); ok {
			args := strings.Fields(cmd)
			if len(args) < 4 || args[0] != "go" || args[1] != "run" {
				t.Fatalf("unexpected go:generate line %q", line)
			}
			return args
		}
	}
	t.Fatal("no //go:generate line in gen.go")
	return nil
}

// sameObject compares what the kernel would be given: every program's
// instructions and every map's definition.
func sameObject(t *testing.T, a, b string) bool {
	specA, err := ebpf.LoadCollectionSpec(a)
	if err != nil {
		t.Fatal(err)
	}
	specB, err := ebpf.LoadCollectionSpec(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(specA.Programs) != len(specB.Programs) || len(specA.Maps) != len(specB.Maps) {
		return false
	}
	for name, pa := range specA.Programs {
		pb, ok := specB.Programs[name]
		if !ok || pa.Type != pb.Type || pa.AttachType != pb.AttachType || pa.License != pb.License {
			return false
		}
		if len(pa.Instructions) != len(pb.Instructions) {
			return false
		}
		for i := range pa.Instructions {
			// Compare opcode, registers, offset and constant, ignoring the
			// source-line and BTF metadata attached to instructions.
			ia, ib := pa.Instructions[i], pb.Instructions[i]
			if ia.OpCode != ib.OpCode || ia.Dst != ib.Dst || ia.Src != ib.Src || ia.Offset != ib.Offset || ia.Constant != ib.Constant || ia.Reference() != ib.Reference() {
				return false
			}
		}
	}
	for name, ma := range specA.Maps {
		mb, ok := specB.Maps[name]
		if !ok || ma.Type != mb.Type || ma.KeySize != mb.KeySize || ma.ValueSize != mb.ValueSize || ma.MaxEntries != mb.MaxEntries || ma.Flags != mb.Flags {
			return false
		}
	}
	return true
}

// Command guard is the latency guard maintainers run before merging a
// hot-path change (`make bench-guard`). It builds the hot-path
// micro-benchmarks twice, from the working tree and from the reference
// commit named in bench/baseline-ref, runs the two builds alternately
// (-count rounds of one run each), compares them through benchstat, and
// fails when
//
//   - any run of the working tree's allocates (allocs/op above 0): the
//     forward path, header rewrite, routing and backend pick allocate
//     nothing per request, or
//   - benchstat finds a significant (p < 0.05) sec/op increase beyond
//     -threshold (default 15 %) in a CPU-bound benchmark: header rewrite,
//     routing, backend pick.
//
// Both sides are measured on the same machine at the same moments, so a
// shared machine's drift (a neighbour's load, another CPU model, a slower
// day) moves both alike: numbers recorded on another day would fail a
// change that costs nothing, or pass one that does. A slowdown is still
// measured twice before it fails the guard (see run).
//
// BenchmarkForward (a request through loopgate and back over loopback) is
// checked for allocations only: its time is dominated by wake-ups and
// varies by ±40 % on a shared host, so a timing gate on it would only
// cry wolf. Its trend is what `make bench-compare` is for.
//
// `go run ./bench/cmd/guard -update` makes HEAD the reference; commit
// bench/baseline-ref with the change that justified it.
package main

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// benchstatCmd runs benchstat at a pinned version, so every maintainer's
// verdict uses the same statistics; `go run pkg@version` needs no go.mod
// entry.
var benchstatCmd = []string{"go", "run", "golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da"}

// suites are the hot-path benchmarks, per package.
var suites = []struct{ pkg, bench string }{
	{"./fastpath/", "^(BenchmarkHeaderRewrite|BenchmarkRoute|BenchmarkForward)$"},
	{"./supervisor/", "^BenchmarkAcquireRelease$"},
}

// timed selects the benchmarks under the timing gate (CPU-bound ones).
var timed = regexp.MustCompile(`^(HeaderRewrite|Route|AcquireRelease)(/|-|$)`)

func main() {
	count := flag.Int("count", 6, "runs of each benchmark")
	threshold := flag.Float64("threshold", 15, "largest tolerated significant sec/op increase, in percent")
	baseline := flag.String("baseline", "bench/baseline-ref", "file naming the reference commit")
	update := flag.Bool("update", false, "make HEAD the reference commit instead of comparing with it")
	flag.Parse()
	if err := run(*count, *threshold, *baseline, *update); err != nil {
		fmt.Fprintln(os.Stderr, "bench-guard:", err)
		os.Exit(1)
	}
}

func run(count int, threshold float64, baseline string, update bool) error {
	if update {
		head, err := gitOut("rev-parse", "--verify", "HEAD^{commit}")
		if err != nil {
			return err
		}
		text := "# The commit bench-guard compares the working tree with (go run ./bench/cmd/guard -update).\n" + head + "\n"
		if err := os.WriteFile(baseline, []byte(text), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "bench-guard: %s names %s; commit it with the change that justifies it\n", baseline, head)
		return nil
	}
	ref, err := readRef(baseline)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "bench-guard-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	refBins, curBins, err := build(tmp, ref)
	if err != nil {
		return err
	}
	refOut, curOut, err := runRounds(count, refBins, curBins)
	if err != nil {
		return err
	}
	allocs, slower, err := compare(tmp, ref, refOut, curOut, threshold)
	if err != nil {
		return err
	}
	if len(allocs) == 0 && len(slower) > 0 {
		// A slowdown must show twice: a burst of load in one round moves
		// a 25 ns benchmark's median by 15 % now and then, a real
		// regression stays.
		fmt.Fprintf(os.Stderr, "bench-guard: %s; measuring again to rule out a busy moment\n", strings.Join(slower, "; "))
		if refOut, curOut, err = runRounds(count, refBins, curBins); err != nil {
			return err
		}
		again := slower
		if allocs, slower, err = compare(tmp, ref, refOut, curOut, threshold); err != nil {
			return err
		}
		slower = persistent(again, slower)
	}
	if failures := append(allocs, slower...); len(failures) > 0 {
		return fmt.Errorf("the hot path got worse than at %.12s:\n  %s", ref, strings.Join(failures, "\n  "))
	}
	fmt.Fprintf(os.Stderr, "bench-guard: ok: no allocation, no significant slowdown beyond %.0f %% against %.12s\n", threshold, ref)
	return nil
}

// readRef reads the reference commit from file: its first line that is
// not a comment, which must name a commit of this repository.
func readRef(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("no reference commit: %w (make HEAD the reference with go run ./bench/cmd/guard -update)", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		ref, err := gitOut("rev-parse", "--verify", line+"^{commit}")
		if err != nil {
			return "", fmt.Errorf("%s: %q is not a commit of this repository (a shallow clone lacks it: git fetch --unshallow): %w", file, line, err)
		}
		return ref, nil
	}
	return "", fmt.Errorf("%s names no commit", file)
}

func gitOut(args ...string) (string, error) {
	var out, errb bytes.Buffer
	cmd := exec.Command("git", args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// testBin is one suite's test binary and the package directory it runs in
// (benchmarks may read files beside their package).
type testBin struct{ path, dir string }

// build extracts the reference commit into tmp/ref (git archive: the
// repository's worktrees are left alone) and compiles each suite's test
// binary there and in the working tree.
func build(tmp, ref string) (refBins, curBins []testBin, err error) {
	refTree := filepath.Join(tmp, "ref")
	if err := os.Mkdir(refTree, 0o755); err != nil {
		return nil, nil, err
	}
	archive := exec.Command("sh", "-c", `git archive "$1" | tar -x -C "$2"`, "sh", ref, refTree)
	if out, err := archive.CombinedOutput(); err != nil {
		return nil, nil, fmt.Errorf("extracting %.12s: %w\n%s", ref, err, out)
	}
	cwd, err := os.Getwd()
	if err != nil {
		return nil, nil, err
	}
	for i, s := range suites {
		for _, side := range []struct {
			name, root string
			bins       *[]testBin
		}{{"ref", refTree, &refBins}, {"cur", cwd, &curBins}} {
			bin := filepath.Join(tmp, fmt.Sprintf("%s-%d.test", side.name, i))
			fmt.Fprintf(os.Stderr, "bench-guard: building %s (%s)\n", s.pkg, side.name)
			cmd := exec.Command("go", "test", "-c", "-o", bin, s.pkg)
			cmd.Dir, cmd.Stderr = side.root, os.Stderr
			if err := cmd.Run(); err != nil {
				return nil, nil, fmt.Errorf("building %s's benchmarks (%s): %w", s.pkg, side.name, err)
			}
			*side.bins = append(*side.bins, testBin{bin, filepath.Join(side.root, s.pkg)})
		}
	}
	return refBins, curBins, nil
}

// runRounds runs count rounds of every suite, each round one run of the
// reference's build and one of the working tree's, in an order that
// alternates between rounds, and returns the two sides' outputs.
func runRounds(count int, refBins, curBins []testBin) (refOut, curOut []byte, err error) {
	var refBuf, curBuf bytes.Buffer
	for round := 0; round < count; round++ {
		fmt.Fprintf(os.Stderr, "bench-guard: round %d of %d\n", round+1, count)
		for i, s := range suites {
			order := []struct {
				bin testBin
				out *bytes.Buffer
			}{{refBins[i], &refBuf}, {curBins[i], &curBuf}}
			if round%2 == 1 {
				order[0], order[1] = order[1], order[0]
			}
			for _, o := range order {
				cmd := exec.Command(o.bin.path, "-test.run", "^$", "-test.bench", s.bench, "-test.benchmem", "-test.count", "1")
				cmd.Dir, cmd.Stdout, cmd.Stderr = o.bin.dir, o.out, os.Stderr
				if err := cmd.Run(); err != nil {
					return nil, nil, fmt.Errorf("benchmarks in %s failed: %w\n%s", s.pkg, err, o.out.String())
				}
			}
		}
	}
	return refBuf.Bytes(), curBuf.Bytes(), nil
}

// compare prints benchstat's table of the reference's results against
// the working tree's and returns the allocation and timing failures.
func compare(tmp, ref string, refOut, curOut []byte, threshold float64) (allocs, slower []string, err error) {
	// benchstat labels columns by file name.
	base := filepath.Join(tmp, fmt.Sprintf("ref-%.12s.txt", ref))
	current := filepath.Join(tmp, "current.txt")
	if err := os.WriteFile(base, refOut, 0o644); err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(current, curOut, 0o644); err != nil {
		return nil, nil, err
	}
	text, err := benchstat("text", base, current)
	if err != nil {
		return nil, nil, err
	}
	fmt.Print(text)
	table, err := benchstat("csv", base, current)
	if err != nil {
		return nil, nil, err
	}
	slower, err = timingFailures(table, threshold)
	return allocFailures(curOut), slower, err
}

// persistent keeps the failures of now whose benchmark also failed before.
func persistent(before, now []string) []string {
	var out []string
	for _, n := range now {
		name, _, _ := strings.Cut(n, ":")
		for _, b := range before {
			if strings.HasPrefix(b, name+":") {
				out = append(out, n)
				break
			}
		}
	}
	return out
}

func benchstat(format string, files ...string) (string, error) {
	args := append(benchstatCmd[1:], "-format", format)
	cmd := exec.Command(benchstatCmd[0], append(args, files...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("benchstat: %w\n%s", err, errb.String())
	}
	return out.String(), nil
}

// allocFailures names every benchmark with a run that allocated.
func allocFailures(results []byte) []string {
	var out []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(results))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		for i := 3; i < len(f); i += 2 {
			if f[i] != "allocs/op" {
				continue
			}
			if v, err := strconv.ParseFloat(f[i-1], 64); err == nil && v > 0 && !seen[f[0]] {
				seen[f[0]] = true
				out = append(out, fmt.Sprintf("%s: %s allocs/op, want 0", f[0], f[i-1]))
			}
		}
	}
	return out
}

// timingFailures reads benchstat's CSV: a table per unit, a header row
// naming the unit, then rows of name, base, CI, current, CI, delta, P.
func timingFailures(table string, threshold float64) ([]string, error) {
	r := csv.NewReader(strings.NewReader(table))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("reading benchstat CSV: %w", err)
	}
	var out []string
	unit := ""
	for _, row := range rows {
		if len(row) > 1 && row[0] == "" && row[1] != "" && !strings.Contains(row[1], ".txt") {
			unit = row[1]
			continue
		}
		if unit != "sec/op" || len(row) < 7 || row[0] == "geomean" || !timed.MatchString(row[0]) {
			continue
		}
		delta := strings.TrimSuffix(row[5], "%")
		if delta == "~" {
			continue
		}
		d, err := strconv.ParseFloat(delta, 64)
		if err != nil {
			continue
		}
		if d > threshold {
			out = append(out, fmt.Sprintf("%s: sec/op %+.1f%% (%s), more than %.0f %%", row[0], d, row[6], threshold))
		}
	}
	return out, nil
}

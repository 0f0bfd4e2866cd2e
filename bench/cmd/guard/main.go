// Command guard is the latency guard maintainers run before merging a
// hot-path change (`make bench-guard`). It runs the hot-path
// micro-benchmarks with -count=6, compares them with the committed
// baseline (bench/baseline.txt) through benchstat, and fails when
//
//   - any of them allocates (allocs/op above 0 in any run): the forward
//     path, header rewrite, routing and backend pick allocate nothing per
//     request, or
//   - benchstat finds a significant (p < 0.05) sec/op increase beyond
//     -threshold (default 15 %, the noise of a shared 2-core machine) in a
//     CPU-bound benchmark: header rewrite, routing, backend pick.
//
// A slowdown is measured twice before it fails the guard (see run).
//
// BenchmarkForward (a request through loopgate and back over loopback) is
// checked for allocations only: its time is dominated by wake-ups and
// varies by ±40 % on a shared host, so a timing gate on it would only
// cry wolf. Its trend is what `make bench-compare` is for.
//
// `go run ./bench/cmd/guard -update` records a new baseline; commit it
// with the change that justified it.
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
	baseline := flag.String("baseline", "bench/baseline.txt", "committed baseline results")
	update := flag.Bool("update", false, "write the baseline instead of comparing with it")
	flag.Parse()
	if err := run(*count, *threshold, *baseline, *update); err != nil {
		fmt.Fprintln(os.Stderr, "bench-guard:", err)
		os.Exit(1)
	}
}

func run(count int, threshold float64, baseline string, update bool) error {
	results, err := runSuites(count)
	if err != nil {
		return err
	}
	if update {
		if err := os.WriteFile(baseline, results, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "bench-guard: wrote %s; commit it with the change that justifies it\n", baseline)
		return nil
	}
	if _, err := os.Stat(baseline); err != nil {
		return fmt.Errorf("no baseline: %w (record one with go run ./bench/cmd/guard -update)", err)
	}
	allocs, slower, err := compare(baseline, results, threshold)
	if err != nil {
		return err
	}
	if len(allocs) == 0 && len(slower) > 0 {
		// A slowdown must show twice: a neighbour's burst of load moves a
		// 25 ns benchmark's median by 15 % now and then, a real regression
		// stays.
		fmt.Fprintf(os.Stderr, "bench-guard: %s; measuring again to rule out a busy moment\n", strings.Join(slower, "; "))
		if results, err = runSuites(count); err != nil {
			return err
		}
		again := slower
		if allocs, slower, err = compare(baseline, results, threshold); err != nil {
			return err
		}
		slower = persistent(again, slower)
	}
	if failures := append(allocs, slower...); len(failures) > 0 {
		return fmt.Errorf("the hot path got worse:\n  %s", strings.Join(failures, "\n  "))
	}
	fmt.Fprintf(os.Stderr, "bench-guard: ok: no allocation, no significant slowdown beyond %.0f %%\n", threshold)
	return nil
}

// runSuites runs every suite and returns the benchmark output.
func runSuites(count int) ([]byte, error) {
	var results bytes.Buffer
	for _, s := range suites {
		fmt.Fprintf(os.Stderr, "bench-guard: go test -bench '%s' -count %d %s\n", s.bench, count, s.pkg)
		cmd := exec.Command("go", "test", "-run", "^$", "-bench", s.bench, "-benchmem", "-count", strconv.Itoa(count), s.pkg)
		cmd.Stdout, cmd.Stderr = &results, os.Stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("benchmarks in %s failed: %w\n%s", s.pkg, err, results.String())
		}
	}
	return results.Bytes(), nil
}

// compare prints benchstat's table of baseline against results and
// returns the allocation and timing failures.
func compare(baseline string, results []byte, threshold float64) (allocs, slower []string, err error) {
	tmp, err := os.MkdirTemp("", "bench-guard-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(tmp)
	// benchstat labels columns by file name.
	current := filepath.Join(tmp, "current.txt")
	if err := os.WriteFile(current, results, 0o644); err != nil {
		return nil, nil, err
	}
	text, err := benchstat("text", baseline, current)
	if err != nil {
		return nil, nil, err
	}
	fmt.Print(text)
	table, err := benchstat("csv", baseline, current)
	if err != nil {
		return nil, nil, err
	}
	slower, err = timingFailures(table, threshold)
	return allocFailures(results), slower, err
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

// GETs with the Go load generator: requests/s at saturation, latency at
// one connection, CPU per request, for each response body.

package main

import (
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/loopgate/loopgate/bench/internal/harness"
)

// sample is one repetition's numbers for one target and body.
type sample struct {
	rps, p50, p90, proxyCPU, backendCPU float64 // req/s, µs, µs, µs/req, µs/req
	satP99                              float64 // µs at saturation
	errors                              int64
}

// results[body][target] holds one sample per repetition.
type results map[string]map[string][]sample

// measureGET is the Go load generator's GET rows, for every body of c.
func measureGET(c config, ts map[string]*target, loadCPU int) (results, error) {
	res := results{}
	for _, b := range c.bodies {
		res[b.Name] = map[string][]sample{}
	}
	for rep := 0; rep < c.reps; rep++ {
		order := slices.Clone(c.targets)
		k := rep % len(order)
		order = append(order[k:], order[:k]...)
		for _, b := range c.bodies {
			for _, name := range order {
				t := ts[name]
				fmt.Fprintf(os.Stderr, "compare: rep %d/%d body=%s %s\n", rep+1, c.reps, b.Name, name)
				s, err := measureOne(c, t, b, loadCPU)
				if err != nil {
					return nil, fmt.Errorf("%s body=%s: %w", name, b.Name, err)
				}
				res[b.Name][name] = append(res[b.Name][name], s)
			}
		}
	}
	return res, nil
}

func measureOne(c config, t *target, b body, loadCPU int) (sample, error) {
	var s sample
	load := func(conns int, d time.Duration) (harness.LoadResult, error) {
		var r harness.LoadResult
		err := runLoadgen(loadCPU, &r, "get", "-addr", t.addr, "-target", b.Path,
			"-size", fmt.Sprint(b.Size), "-conns", fmt.Sprint(conns), "-duration", d.String())
		return r, err
	}
	if _, err := load(c.conns, c.warmup); err != nil {
		return s, err
	}
	var pids []int
	if t.proxyPIDs != nil {
		pids = t.proxyPIDs()
	}
	p0, err := harness.TotalCPU(pids...)
	if err != nil {
		return s, err
	}
	b0, err := harness.CPUTime(t.backendPID)
	if err != nil {
		return s, err
	}
	sat, err := load(c.conns, c.duration)
	if err != nil {
		return s, err
	}
	p1, err := harness.TotalCPU(pids...)
	if err != nil {
		return s, err
	}
	b1, err := harness.CPUTime(t.backendPID)
	if err != nil {
		return s, err
	}
	lat, err := load(1, c.duration)
	if err != nil {
		return s, err
	}
	if sat.Requests == 0 || lat.Requests == 0 {
		return s, fmt.Errorf("no request answered: %s%s", sat.FirstError, lat.FirstError)
	}
	s.rps = sat.RPS()
	s.p50 = float64(lat.P50) / 1e3
	s.p90 = float64(lat.P90) / 1e3
	s.satP99 = float64(sat.P99) / 1e3
	s.proxyCPU = float64(p1-p0) / 1e3 / float64(sat.Requests)
	s.backendCPU = float64(b1-b0) / 1e3 / float64(sat.Requests)
	s.errors = sat.Errors + lat.Errors
	if s.errors > 0 {
		fmt.Fprintf(os.Stderr, "compare: %s: %d errors, first: %s%s\n", t.name, s.errors, sat.FirstError, lat.FirstError)
	}
	return s, nil
}

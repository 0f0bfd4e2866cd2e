// The load generator process (this program re-executed as `compare loadgen
// MODE`, pinned to the load CPU): one run, its result as JSON on stdout.

package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/loopgate/loopgate/bench/internal/harness"
)

// loadgen runs one load of the given mode: get (keep-alive GETs, harness.RunLoad),
// bytes (large downloads or uploads, bodies.go) or handshake (a TLS
// connection per request, tls.go).
func loadgen(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("loadgen: want a mode: get, bytes or handshake")
	}
	mode, args := args[0], args[1:]
	fs := flag.NewFlagSet("loadgen "+mode, flag.ContinueOnError)
	addr := fs.String("addr", "", "host:port")
	target := fs.String("target", "/", "request target")
	size := fs.Int("size", 0, "body length in bytes: expected in answers, sent in uploads")
	conns := fs.Int("conns", 1, "connections (concurrent requests)")
	d := fs.Duration("duration", 5*time.Second, "how long to send")
	upload := fs.Bool("upload", false, "bytes: POST -size bytes instead of GETting them")
	resume := fs.Bool("resume", false, "handshake: resume sessions from tickets")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var res any
	var err error
	switch mode {
	case "get":
		res, err = harness.RunLoad(harness.LoadOptions{
			Addr: *addr, Request: harness.GET("bench.example", *target), WantBody: *size,
			Conns: *conns, Duration: *d,
		})
	case "bytes":
		res, err = runBytes(*addr, *target, *size, *upload, *conns, *d)
	case "handshake":
		res, err = runHandshakes(*addr, *resume, *conns, *d)
	default:
		return fmt.Errorf("loadgen: unknown mode %q (want get, bytes or handshake)", mode)
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// runLoadgen runs `compare loadgen args...` pinned to cpu and decodes its
// result into out.
func runLoadgen(cpu int, out any, args ...string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, append([]string{"loadgen"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := harness.StartPinned(cmd, cpu); err != nil {
		return err
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("load generator: %w: %s", err, stderr.String())
	}
	return json.Unmarshal(stdout.Bytes(), out)
}

// measureLoadgen runs the load generator with args for c.warmup, not
// counted, then for c.duration, whose result it decodes into out, and
// returns the CPU time pids used during that second run, and the time
// backend (0: none) used.
func measureLoadgen(c config, pids []int, backend int, loadCPU int, out any, args []string) (proxy, backendCPU harness.CPU, err error) {
	if err := runLoadgen(loadCPU, out, append(args, "-duration", c.warmup.String())...); err != nil {
		return harness.CPU{}, harness.CPU{}, err
	}
	var backendPIDs []int
	if backend != 0 {
		backendPIDs = []int{backend}
	}
	backendCPU, err = cpuDuring(backendPIDs, func() error {
		proxy, err = cpuDuring(pids, func() error {
			return runLoadgen(loadCPU, out, append(args, "-duration", c.duration.String())...)
		})
		return err
	})
	return proxy, backendCPU, err
}

// cpuDuring returns the CPU time pids used while load ran.
func cpuDuring(pids []int, load func() error) (harness.CPU, error) {
	c0, err := harness.SumCPUTimes(pids...)
	if err != nil {
		return harness.CPU{}, err
	}
	if err := load(); err != nil {
		return harness.CPU{}, err
	}
	c1, err := harness.SumCPUTimes(pids...)
	if err != nil {
		return harness.CPU{}, err
	}
	return c1.Sub(c0), nil
}

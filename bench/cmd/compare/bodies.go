// Large bodies: 1 MiB responses, 64 MiB downloads and 64 MiB uploads, in
// MiB/s and the proxy's CPU per MiB.

package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// bytesResult is one large-body load run.
type bytesResult struct {
	Transfers  int64         `json:"transfers"`
	Bytes      int64         `json:"bytes"`
	Errors     int64         `json:"errors"`
	Elapsed    time.Duration `json:"elapsed_ns"`
	FirstError string        `json:"first_error,omitempty"`
}

// discard is io.Discard without ReadFrom, so io.CopyBuffer reads with the
// caller's (large) buffer.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// runBytes keeps conns keep-alive connections busy for d, each GETting
// target (a size-byte answer) or, with upload, POSTing size bytes to it,
// one after another; a transfer under way at d is finished and counted.
func runBytes(addr, target string, size int, upload bool, conns int, d time.Duration) (bytesResult, error) {
	var (
		mu  sync.Mutex
		res bytesResult
		wg  sync.WaitGroup
	)
	head := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: loopgate-bench\r\n\r\n", target)
	if upload {
		head = fmt.Sprintf("POST %s HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: loopgate-bench\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", target, size)
	}
	start := time.Now()
	stop := start.Add(d)
	for range conns {
		wg.Go(func() {
			buf := make([]byte, 256<<10)
			var nc net.Conn
			var br *bufio.Reader
			var n, errs int64
			var first error
			one := func() error {
				if nc == nil {
					c, err := net.DialTimeout("tcp", addr, 5*time.Second)
					if err != nil {
						return err
					}
					nc, br = c, bufio.NewReaderSize(c, 64<<10)
				}
				_ = nc.SetDeadline(time.Now().Add(60 * time.Second))
				if _, err := io.WriteString(nc, head); err != nil {
					return err
				}
				if upload {
					for left := size; left > 0; {
						w, err := nc.Write(buf[:min(left, len(buf))])
						if err != nil {
							return err
						}
						left -= w
					}
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					return err
				}
				got, err := io.CopyBuffer(discard{}, resp.Body, buf)
				resp.Body.Close()
				if err != nil {
					return err
				}
				want := int64(size)
				if upload {
					want = int64(len(strconv.Itoa(size)))
				}
				if resp.StatusCode != http.StatusOK || got != want {
					return fmt.Errorf("answer %s with %d body bytes, want 200 with %d", resp.Status, got, want)
				}
				return nil
			}
			for time.Now().Before(stop) {
				if err := one(); err != nil {
					errs++
					if first == nil {
						first = err
					}
					if nc != nil {
						nc.Close()
						nc = nil
					}
					continue
				}
				n++
			}
			if nc != nil {
				nc.Close()
			}
			mu.Lock()
			defer mu.Unlock()
			res.Transfers += n
			res.Bytes += n * int64(size)
			res.Errors += errs
			if first != nil && res.FirstError == "" {
				res.FirstError = first.Error()
			}
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	return res, nil
}

// bodyRow is one large-body measurement.
type bodyRow struct {
	title, target string
	size, conns   int
	upload        bool
}

var bodyRows = []bodyRow{
	{"1 MiB responses", "/1m", 1 << 20, 8, false},
	{"64 MiB downloads", "/64m", 64 << 20, 2, false},
	{"64 MiB uploads", "/upload", 64 << 20, 2, true},
}

// measureBodies returns one table per large-body row.
func measureBodies(c config, ts map[string]*target, loadCPU int) ([]*table, error) {
	var out []*table
	var errs []error
	for _, br := range bodyRows {
		t := &table{title: br.title, ref: "nginx",
			targets: c.rowTargets("direct", "loopgate", "loopgate-sockmap", "nginx", "haproxy", "haproxy-splice"),
			method: fmt.Sprintf("A Go client on CPU 1, %d keep-alive connections, each %s one after another for %v (a transfer under way then is finished and counted) "+
				"after a %v run not counted; reads and writes of 256 KiB. CPU: the proxy's utime+stime over the run per MiB moved (10 ms ticks: a user-space 0 is less than one tick), and the backend's "+
				"(the sockmap moves kernel work between the sending and the receiving process, so a sockmap row compares on the sum). "+
				"`haproxy-splice` is HAProxy with `option splice-auto`.", br.conns, what(br), c.duration, c.warmup),
			metrics: []metric{
				{key: "mibs", head: "MiB/s", format: "%.0f", chart: br.title + ": MiB/s (higher is better)"},
				{key: "cpu", head: "proxy CPU µs/MiB", format: "%.0f", chart: br.title + ": proxy CPU µs per MiB (lower is better)"},
				{key: "user", head: "user-space µs/MiB", format: "%.0f"},
				{key: "backend", head: "backend CPU µs/MiB", format: "%.0f"},
				{key: "both", head: "proxy + backend CPU µs/MiB", format: "%.0f"},
				{key: "errors", head: "errors", format: "%.0f", noRatio: true},
			}}
		err := measureTable(c, ts, t, func(name string) (map[string]float64, error) {
			tg := ts[name]
			args := []string{"bytes", "-addr", tg.addr, "-target", br.target, "-size", strconv.Itoa(br.size),
				"-conns", strconv.Itoa(br.conns), "-upload=" + strconv.FormatBool(br.upload)}
			var r bytesResult
			cpu, backendCPU, err := measureLoadgen(c, tg.pids(), tg.backendPID, loadCPU, &r, args)
			if err != nil {
				return nil, err
			}
			if r.Transfers == 0 {
				return nil, fmt.Errorf("no transfer completed: %s", r.FirstError)
			}
			mib := float64(r.Bytes) / (1 << 20)
			v := map[string]float64{"mibs": mib / r.Elapsed.Seconds(), "errors": float64(r.Errors),
				"backend": float64(backendCPU.Total().Nanoseconds()) / 1e3 / mib}
			if tg.proxyPIDs != nil {
				v["cpu"] = float64(cpu.Total().Nanoseconds()) / 1e3 / mib
				v["user"] = float64(cpu.User.Nanoseconds()) / 1e3 / mib
				v["both"] = v["cpu"] + v["backend"]
			}
			return v, nil
		})
		errs = append(errs, err)
		out = append(out, t)
	}
	return out, errors.Join(errs...)
}

func what(br bodyRow) string {
	if br.upload {
		return fmt.Sprintf("POSTing %d MiB to the backend, which reads and drops it", br.size>>20)
	}
	return fmt.Sprintf("GETting a %d MiB answer", br.size>>20)
}

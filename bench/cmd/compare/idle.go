// Idle keep-alive connections: each proxy's RSS per connection.

package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/loopgate/loopgate/bench/internal/harness"
)

// idleConns and idleHold: how many keep-alive connections each proxy
// holds (one request each, then idle) and for how long before its RSS is
// read (loopgate parks a connection idle for a second and returns the
// memory of a burst of them 3 s after it ends).
const (
	idleConns = 2000
	idleHold  = 6 * time.Second
)

// measureIdle returns, for each proxy target, the bytes of RSS (all its
// processes) per idle keep-alive client connection.
func measureIdle(c config, ts map[string]*target) (map[string]float64, error) {
	out := map[string]float64{}
	for _, name := range c.targets {
		t := ts[name]
		if t.proxyPIDs == nil {
			continue
		}
		fmt.Fprintf(os.Stderr, "compare: %d idle connections to %s\n", idleConns, name)
		before := rssKB(t.proxyPIDs())
		conns := make([]net.Conn, 0, idleConns)
		closeAll := func() {
			for _, nc := range conns {
				nc.Close()
			}
		}
		req := harness.GET("bench.example", "/")
		for range idleConns {
			nc, err := net.DialTimeout("tcp", t.addr, 5*time.Second)
			if err != nil {
				closeAll()
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			conns = append(conns, nc)
			_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := nc.Write(req); err != nil {
				closeAll()
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			resp, err := http.ReadResponse(bufio.NewReaderSize(nc, 512), nil)
			if err != nil {
				closeAll()
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			_ = nc.SetDeadline(time.Time{})
		}
		time.Sleep(idleHold)
		after := rssKB(t.proxyPIDs())
		closeAll()
		out[name] = float64(after-before) * 1024 / idleConns
		time.Sleep(time.Second)
	}
	return out, nil
}

// rssKB sums VmRSS over pids.
func rssKB(pids []int) int64 {
	var sum int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
				n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				sum += n
			}
		}
	}
	return sum
}

// Idle keep-alive connections and idle WebSocket tunnels: each proxy's RSS
// per connection or tunnel.

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

// Each proxy is measured in two steps of idleStep connections (or
// tunnels): the RSS after the second step minus the RSS after the first,
// per connection, so that memory the proxy holds or returns from what came
// before (the load runs, loopgate's pools until a collection) cancels out.
// Each step is held idleHold before the RSS is read: loopgate parks a
// connection idle for a second and returns the memory of a burst of them
// (1,024 or more) 3 s after it ends.
const (
	idleStep = 1500
	idleHold = 10 * time.Second
)

// measureIdle returns, for each proxy target, the bytes of RSS (all its
// processes) per idle keep-alive client connection, one request each.
func measureIdle(c config, ts map[string]*target) (map[string]float64, []string) {
	req := harness.GET("bench.example", "/")
	return measureHeld(c, ts, "idle keep-alive connections", func(nc net.Conn, br *bufio.Reader) error {
		if _, err := nc.Write(req); err != nil {
			return err
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	})
}

// measureTunnels returns, for each proxy target, the bytes of RSS per idle
// WebSocket tunnel to the backend's /ws echo, after one message each.
func measureTunnels(c config, ts map[string]*target) (map[string]float64, []string) {
	req := harness.GET("bench.example", "/ws", "Upgrade: websocket", "Connection: Upgrade",
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13")
	return measureHeld(c, ts, "idle WebSocket tunnels", func(nc net.Conn, br *bufio.Reader) error {
		if _, err := nc.Write(req); err != nil {
			return err
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			return fmt.Errorf("upgrade answered %s", resp.Status)
		}
		if _, err := nc.Write([]byte("ping")); err != nil {
			return err
		}
		got := make([]byte, 4)
		if _, err := io.ReadFull(br, got); err != nil || string(got) != "ping" {
			return fmt.Errorf("echo %q: %v", got, err)
		}
		return nil
	})
}

// measureHeld opens two steps of idleStep connections to each proxy, each
// made ready by open, and returns the RSS per connection of the second,
// and a line for each proxy where that failed.
func measureHeld(c config, ts map[string]*target, what string, open func(net.Conn, *bufio.Reader) error) (map[string]float64, []string) {
	out := map[string]float64{}
	var failed []string
	for _, name := range c.rowTargets(proxies...) {
		v, err := heldRSS(ts[name], what, open)
		if err != nil {
			fmt.Fprintf(os.Stderr, "compare: %s: %s: %v\nthe end of its output:\n%s", name, what, err, ts[name].logTail())
			failed = append(failed, fmt.Sprintf("%s: failed: %v", name, err))
		} else {
			out[name] = v
		}
		time.Sleep(time.Second)
	}
	return out, failed
}

// heldRSS is measureHeld for one target.
func heldRSS(t *target, what string, open func(net.Conn, *bufio.Reader) error) (float64, error) {
	var conns []net.Conn
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	var rss [2]int64
	for step := range 2 {
		fmt.Fprintf(os.Stderr, "compare: %d %s to %s (step %d of 2)\n", idleStep, what, t.name, step+1)
		for range idleStep {
			nc, err := net.DialTimeout("tcp", t.addr, 5*time.Second)
			if err != nil {
				return 0, fmt.Errorf("after %d: %w", len(conns), err)
			}
			conns = append(conns, nc)
			_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
			if err := open(nc, bufio.NewReaderSize(nc, 512)); err != nil {
				return 0, fmt.Errorf("after %d: %w", len(conns)-1, err)
			}
			_ = nc.SetDeadline(time.Time{})
		}
		time.Sleep(idleHold)
		rss[step] = rssKB(t.proxyPIDs())
	}
	return float64(rss[1]-rss[0]) * 1024 / idleStep, nil
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

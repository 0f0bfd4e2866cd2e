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
	"syscall"
	"time"

	"github.com/loopgate/loopgate/bench/internal/harness"
)

// Each proxy is measured in two steps of half the connections (-idle-conns)
// or tunnels (-idle-tunnels): the RSS after the second step minus the RSS
// after the first,
// per connection, so that memory the proxy holds or returns from what came
// before (the load runs, loopgate's pools until a collection) cancels out.
// Each step is held idleHold before the RSS is read: loopgate parks a
// connection idle for a second and returns the memory of a burst of them
// (1,024 or more) 3 s after it ends.
const idleHold = 10 * time.Second

// heldDescriptors is how many file descriptors the proxy with the most per
// held connection (loopgate and nginx: a tunnel's client and app side)
// needs for n of them, plus its listeners, logs and pools.
func heldDescriptors(n, perConn int) int { return n*perConn + 256 }

// checkHeldLimit says, before anything starts, when the open-file hard
// limit cannot hold n connections of perConn descriptors each.
func checkHeldLimit(flagName string, n, perConn int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if n < 2 || n%2 != 0 {
		return fmt.Errorf("-%s=%d: an even count of at least 2 (two equal steps)", flagName, n)
	}
	if need := heldDescriptors(n, perConn); uint64(need) > lim.Max {
		return fmt.Errorf("-%s=%d: the proxy would hold %d descriptors (%d per connection), over this machine's open-file hard limit of %d (ulimit -Hn); "+
			"raise the limit (root with CAP_SYS_RESOURCE) or ask for at most %d", flagName, n, need, perConn, lim.Max, (int(lim.Max)-256)/perConn/2*2)
	}
	return nil
}

// measureIdle returns, for each proxy target, the bytes of RSS (all its
// processes) per idle keep-alive client connection, one request each.
func measureIdle(c config, ts map[string]*target) (out map[string]float64, notes, failed []string) {
	req := harness.GET("bench.example", "/")
	return measureHeld(c, ts, c.idleConns/2, "idle keep-alive connections", func(nc net.Conn, br *bufio.Reader) error {
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
func measureTunnels(c config, ts map[string]*target) (out map[string]float64, notes, failed []string) {
	req := harness.GET("bench.example", "/ws", "Upgrade: websocket", "Connection: Upgrade",
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13")
	return measureHeld(c, ts, c.idleTunnels/2, "idle WebSocket tunnels", func(nc net.Conn, br *bufio.Reader) error {
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

// measureHeld opens two steps of step connections to each proxy, each
// made ready by open, and returns the RSS per connection of the second, a
// line for each proxy not measured (notes) and one for each where the
// measurement failed (failed, also in notes).
func measureHeld(c config, ts map[string]*target, step int, what string, open func(net.Conn, *bufio.Reader) error) (out map[string]float64, notes, failed []string) {
	out = map[string]float64{}
	for _, name := range c.rowTargets(proxies...) {
		if name == "haproxy" && 2*step > harness.HAProxyMaxConn {
			notes = append(notes, fmt.Sprintf("haproxy: not measured: %d would pass its maxconn, %d (what this machine's descriptor limit allows it with TLS)",
				2*step, harness.HAProxyMaxConn))
			continue
		}
		v, err := heldRSS(ts[name], step, what, open)
		if err != nil {
			fmt.Fprintf(os.Stderr, "compare: %s: %s: %v\nthe end of its output:\n%s", name, what, err, ts[name].logTail())
			failed = append(failed, fmt.Sprintf("%s: failed: %v", name, err))
			notes = append(notes, failed[len(failed)-1])
		} else {
			out[name] = v
		}
		time.Sleep(time.Second)
	}
	return out, notes, failed
}

// heldRSS is measureHeld for one target.
func heldRSS(t *target, n int, what string, open func(net.Conn, *bufio.Reader) error) (float64, error) {
	var conns []net.Conn
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	var rss [2]int64
	for step := range 2 {
		fmt.Fprintf(os.Stderr, "compare: %d %s to %s (step %d of 2)\n", n, what, t.name, step+1)
		for range n {
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
		rss[step] = settledRSSKB(t.proxyPIDs())
	}
	return float64(rss[1]-rss[0]) * 1024 / float64(n), nil
}

// settledRSSKB is rssKB once it has stopped moving: the same within 1 %
// over two seconds, read at most rssSettleMax. The Go runtime gives freed
// memory back in the background, so a reading while it does so would
// charge the next step with what the previous one returned (a run read
// -2,408 bytes per connection that way).
func settledRSSKB(pids []int) int64 {
	const rssSettleMax = 30 * time.Second
	prev := []int64{rssKB(pids)}
	for deadline := time.Now().Add(rssSettleMax); time.Now().Before(deadline); {
		time.Sleep(time.Second)
		cur := rssKB(pids)
		prev = append(prev, cur)
		if len(prev) >= 3 {
			first := prev[len(prev)-3]
			if d := cur - first; d*100 <= first && -d*100 <= first {
				return cur
			}
		}
	}
	return prev[len(prev)-1]
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

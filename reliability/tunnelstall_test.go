package reliability

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/loopgatetest"
)

// TestTunnelStalledClientRealBackend: loopgate's binary with --send-timeout
// 2s and the test backend's WebSocket echo. A client upgrades, then sends
// frames and reads nothing: the echoes fill the way back, and once
// loopgate's write to the client has waited --send-timeout the tunnel is
// closed, both sides: the backend process's socket of the tunnel goes away
// (it saw its connection closed), the client's writes fail, no upstream
// connection stays busy. Before, the tunnel stayed stuck for good.
func TestTunnelStalledClientRealBackend(t *testing.T) {
	const sendTimeout = 2 * time.Second
	for _, accel := range []string{"off", "auto"} {
		t.Run("accel "+accel, func(t *testing.T) {
			dir := appDir(t, "", nil)
			l := startLoopgate(t, loopgatetest.Options{Args: []string{"--accel", accel, "--send-timeout", sendTimeout.String(), dir}})
			c := client(t, 10*time.Second)
			if code, _, err := get(c, l.URL("/")); err != nil || code != 200 {
				t.Fatalf("first request: %d %v", code, err)
			}
			pid := l.WaitReady(t, 1, 5*time.Second)[0]
			loopgatetest.KillAtCleanup(t, pid)

			w, err := dialWS(l.Front)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { w.c.Close() })
			if err := w.echo("hello"); err != nil {
				t.Fatal(err)
			}
			// The backend's connected sockets: the tunnel's (the
			// upgrade took the first request's pooled connection).
			var tunnel []string
			for s := range processSockets(t, pid) {
				tunnel = append(tunnel, s)
			}
			if len(tunnel) != 1 {
				t.Fatalf("the backend process has %d connected sockets, want the tunnel's alone: %v", len(tunnel), tunnel)
			}

			// Frames of 60,000 bytes, masked, until the connection fails.
			frame := []byte{0x82, 0x80 | 126, 60000 >> 8, 60000 & 0xff, 1, 2, 3, 4}
			frame = append(frame, make([]byte, 60000)...)
			start := time.Now()
			writeFailed := make(chan error, 1)
			go func() {
				_ = w.c.SetWriteDeadline(time.Now().Add(sendTimeout + 30*time.Second))
				for {
					if _, err := w.c.Write(frame); err != nil {
						writeFailed <- err
						return
					}
				}
			}()

			bound := sendTimeout + 15*time.Second
			for {
				if !anyOpen(processSockets(t, pid), tunnel) {
					break
				}
				if time.Since(start) > bound {
					t.Fatalf("the backend's tunnel socket still open %v after a client stopped reading (--send-timeout %v)", time.Since(start), sendTimeout)
				}
				time.Sleep(50 * time.Millisecond)
			}
			took := time.Since(start)
			t.Logf("the backend's tunnel socket closed %v after the client stopped reading", took.Round(10*time.Millisecond))
			if took < sendTimeout-500*time.Millisecond {
				t.Errorf("the tunnel closed after %v, before --send-timeout %v could pass", took, sendTimeout)
			}
			select {
			case err := <-writeFailed:
				if errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("the client's connection stayed open: its write timed out")
				}
			case <-time.After(15 * time.Second):
				t.Fatal("the client's writes still go through 15 s after the backend's side closed")
			}
			for busy := `loopgate_upstream_connections{app="/",state="busy"}`; metric(t, l, busy) != 0; time.Sleep(50 * time.Millisecond) {
				if time.Since(start) > bound+10*time.Second {
					t.Fatalf("%s still %v", busy, metric(t, l, busy))
				}
			}
			// The app still serves.
			if code, _, err := get(c, l.URL("/")); err != nil || code != 200 {
				t.Fatalf("a request after the tunnel closed: %d %v", code, err)
			}
		})
	}
}

// processSockets returns the established TCP sockets pid holds open, by
// inode.
func processSockets(t *testing.T, pid int) map[string]bool {
	t.Helper()
	established := map[string]bool{}
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "net", f))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			// sl local rem st tx:rx tr:when retrnsmt uid timeout inode
			if fs := strings.Fields(line); len(fs) > 9 && fs[3] == "01" {
				established[fs[9]] = true
			}
		}
	}
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, e := range ents {
		l, err := os.Readlink(filepath.Join(dir, e.Name()))
		if inode, ok := strings.CutPrefix(l, "socket:["); err == nil && ok && established[strings.TrimSuffix(inode, "]")] {
			out[strings.TrimSuffix(inode, "]")] = true
		}
	}
	return out
}

func anyOpen(open map[string]bool, socks []string) bool {
	for _, s := range socks {
		if open[s] {
			return true
		}
	}
	return false
}

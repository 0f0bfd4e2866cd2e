package reliability

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/loopgatetest"
)

// TestFileDescriptorExhaustion runs loopgate with RLIMIT_NOFILE 256 and
// opens 400 idle connections to it. Accepting fails with EMFILE; loopgate
// must keep serving the connections it has, say so in its log a bounded
// number of times, not spin, keep its backend (a failed connect caused by
// its own limit says nothing about the backend), and accept again once
// connections close.
func TestFileDescriptorExhaustion(t *testing.T) {
	dir := appDir(t, `requestTimeout="00:00:02"`, nil)
	l := startLoopgate(t, loopgatetest.Options{Args: []string{"--accel", "off", dir}, NoFile: 256})
	// Three keep-alive clients, each with a pooled backend connection
	// behind it, made before the exhaustion.
	var clients []*clientConn
	for range 3 {
		clients = append(clients, newClientConn(t, l.Front))
	}
	// Three requests at once leave three idle connections to the backend
	// in loopgate's pool: enough for the sequential requests below, whose
	// connection may come back to the pool just after the client has its
	// answer.
	warm := make(chan int, len(clients))
	for _, c := range clients {
		go func() { warm <- c.getNoFatal("/sleep?ms=300") }()
	}
	for range clients {
		if code := <-warm; code != 200 {
			t.Fatalf("before: %d", code)
		}
	}
	pid := l.WaitReady(t, 1, 5*time.Second)[0]
	loopgatetest.KillAtCleanup(t, pid)

	var flood []net.Conn
	for range 400 {
		c, err := net.DialTimeout("tcp", l.Front, 2*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", len(flood), err)
		}
		flood = append(flood, c)
	}
	t.Cleanup(func() {
		for _, c := range flood {
			c.Close()
		}
	})
	if l.WaitLog(5*time.Second, func(line loopgatetest.Line) bool { return strings.Contains(line.Str("error"), "too many open files") }) == nil {
		t.Fatal("loopgate did not log running out of file descriptors")
	}
	before, _ := readProc(l.PID())
	const hold = 3 * time.Second
	served := 0
	for end := time.Now().Add(hold); time.Now().Before(end); {
		for i, c := range clients {
			if code := c.get(t, "/"); code != 200 {
				t.Fatalf("client %d during the exhaustion (after %d served): %d", i, served, code)
			}
			served++
		}
		time.Sleep(50 * time.Millisecond)
	}
	after, err := readProc(l.PID())
	if err != nil {
		t.Fatalf("loopgate gone during the exhaustion: %v", err)
	}
	cpu := after.cpu - before.cpu
	exhausted := l.Count(func(line loopgatetest.Line) bool { return strings.Contains(line.Str("error"), "too many open files") })
	t.Logf("RLIMIT_NOFILE 256, 400 connections: %d fds open; %d requests on existing connections served in %v; loopgate CPU %v; %d log lines about it",
		after.openFDs, served, hold, cpu, exhausted)
	if cpu > hold/4 {
		t.Errorf("loopgate used %v of CPU in %v while out of file descriptors: spinning", cpu, hold)
	}
	if exhausted > 3 {
		t.Errorf("%d log lines about running out of file descriptors, want at most 3", exhausted)
	}

	// A request that needs a new backend connection while the pooled ones
	// are busy (hung requests hold them), sent on a flood connection that
	// loopgate did accept, cannot have one: it fails, but the backend is
	// not blamed for loopgate's own limit.
	hung := make(chan int, len(clients))
	for _, c := range clients {
		go func() { hung <- c.getNoFatal("/hang") }()
	}
	time.Sleep(300 * time.Millisecond)
	fc := &clientConn{c: flood[0], br: bufio.NewReader(flood[0])}
	code, err := fc.roundTrip("/")
	t.Logf("a request needing a new backend connection during the exhaustion: %d %v", code, err)
	for range clients {
		select {
		case code := <-hung:
			if code != 502 {
				t.Errorf("hung request: %d, want 502 at requestTimeout", code)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("hung request not answered within 10 s")
		}
	}
	if pids := l.ReadyPIDs(t); len(pids) != 1 || pids[0] != pid {
		t.Errorf("backend after the exhaustion: %v, want still %d", pids, pid)
	}
	if n := l.Count(func(line loopgatetest.Line) bool { return line.Str("event") == "crash" }); n > 0 {
		t.Errorf("%d crash events: a healthy backend was blamed for loopgate's file descriptor limit", n)
	}

	for _, c := range flood {
		c.Close()
	}
	flood = nil
	start := time.Now()
	nc := newClientConn(t, l.Front)
	if code := nc.get(t, "/"); code != 200 {
		t.Fatalf("new connection after recovery: %d", code)
	}
	t.Logf("a new connection was served %v after the flood closed", time.Since(start).Round(time.Millisecond))
	if l.WaitLog(5*time.Second, func(line loopgatetest.Line) bool { return line.Str("event") == "accept_recovered" }) == nil {
		t.Errorf("no log line saying accepting works again")
	}
}

// clientConn is one keep-alive HTTP/1.1 connection driven by hand, so the
// test knows it is the same connection every time.
type clientConn struct {
	c  net.Conn
	br *bufio.Reader
}

func newClientConn(t *testing.T, addr string) *clientConn {
	t.Helper()
	c := dialRaw(t, addr, time.Minute)
	return &clientConn{c: c, br: bufio.NewReader(c)}
}

// get sends a GET, reads the whole response and returns its status.
func (c *clientConn) get(t *testing.T, path string) int {
	t.Helper()
	code, err := c.roundTrip(path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return code
}

// getNoFatal is get for other goroutines: 0 on failure.
func (c *clientConn) getNoFatal(path string) int {
	code, _ := c.roundTrip(path)
	return code
}

func (c *clientConn) roundTrip(path string) (int, error) {
	_ = c.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c.c, "GET "+path+" HTTP/1.1\r\nHost: t\r\n\r\n"); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}

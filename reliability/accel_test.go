package reliability

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/loopgate/loopgate/bpf/bpftest"
	"github.com/loopgate/loopgate/internal/loopgatetest"
)

// TestAccelOnTraffic runs loopgate with --accel on and checks, end to end,
// that each kind of traffic is carried by the eBPF sockmap (the redirected
// message count grows with it, in /status and in /metrics) and arrives
// byte-identical: GETs, a 1 MiB upload echoed back, an 8 MiB download and a
// WebSocket echo session in both directions, closed by the client.
func TestAccelOnTraffic(t *testing.T) {
	bpftest.Require(t)
	dir := appDir(t, `processesPerApplication="1"`, nil)
	l := startLoopgate(t, loopgatetest.Options{Args: []string{"--accel", "on", dir}})
	acc := l.Status(t).Acceleration
	if !acc.Active || acc.Mode != "on" {
		t.Fatalf("/status acceleration %+v: want on and active", acc)
	}
	c := client(t, 10*time.Second)
	// The first request starts the backend; its port is in the map once it
	// is ready, before loopgate's first upstream connection to it.
	if code, body, err := get(c, l.URL("/")); err != nil || code != 200 || !strings.HasPrefix(body, "pid=") {
		t.Fatalf("first GET /: %d %q %v", code, body, err)
	}
	redirected := l.Status(t).Acceleration.Redirected
	grew := func(what string) {
		t.Helper()
		now := l.Status(t).Acceleration.Redirected
		if now <= redirected {
			t.Errorf("%s: redirected messages %d before, %d after: the traffic did not go over the sockmap", what, redirected, now)
		}
		redirected = now
	}

	for i := range 20 {
		if code, body, err := get(c, l.URL("/")); err != nil || code != 200 || !strings.HasPrefix(body, "pid=") {
			t.Fatalf("GET / #%d: %d %q %v", i, code, body, err)
		}
	}
	grew("20 GETs")

	up := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(6, 7))
	for i := range up {
		up[i] = byte(rng.Uint32())
	}
	resp, err := c.Post(l.URL("/echo"), "application/octet-stream", bytes.NewReader(up))
	if err != nil {
		t.Fatalf("POST /echo: %v", err)
	}
	back, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST /echo: %d, %d bytes, %v", resp.StatusCode, len(back), err)
	}
	if i := firstDiff(up, back); i >= 0 {
		t.Fatalf("1 MiB upload echo: %d bytes back, first difference at byte %d", len(back), i)
	}
	grew("1 MiB upload echo")

	resp, err = c.Get(l.URL("/big?mb=8"))
	if err != nil {
		t.Fatalf("GET /big: %v", err)
	}
	down, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /big?mb=8: %d, %d bytes, %v", resp.StatusCode, len(down), err)
	}
	want := make([]byte, 8<<20) // testbackend's /big: byte(i) in each MiB
	for i := range want {
		want[i] = byte(i)
	}
	if i := firstDiff(want, down); i >= 0 {
		t.Fatalf("8 MiB download: %d bytes, first difference at byte %d", len(down), i)
	}
	grew("8 MiB download")

	ws, err := websocket.Dial("ws://"+l.Front+"/ws", "", "http://"+l.Front)
	if err != nil {
		t.Fatalf("WebSocket dial: %v", err)
	}
	t.Cleanup(func() { ws.Close() })
	_ = ws.SetDeadline(time.Now().Add(5 * time.Second))
	for i, n := range []int{1, 100, 4 << 10, 64 << 10, 7} {
		msg := make([]byte, n)
		for j := range msg {
			msg[j] = byte(rng.Uint32())
		}
		if _, err := ws.Write(msg); err != nil {
			t.Fatalf("WebSocket message %d (%d bytes): write: %v", i, n, err)
		}
		// The echo may come back in several frames; read exactly n bytes.
		got := make([]byte, n)
		if _, err := io.ReadFull(ws, got); err != nil {
			t.Fatalf("WebSocket message %d (%d bytes): read: %v", i, n, err)
		}
		if j := firstDiff(msg, got); j >= 0 {
			t.Fatalf("WebSocket message %d (%d bytes): echo differs at byte %d", i, n, j)
		}
	}
	if err := ws.Close(); err != nil {
		t.Fatalf("WebSocket close: %v", err)
	}
	grew("WebSocket echo")

	// The session's end reaches the backend and loopgate stays usable.
	if code, body, err := get(c, l.URL("/")); err != nil || code != 200 || !strings.HasPrefix(body, "pid=") {
		t.Fatalf("GET / after the WebSocket session: %d %q %v", code, body, err)
	}
	if m := uint64(metric(t, l, `loopgate_sockmap_messages_total{verdict="redirect"}`)); m < redirected {
		t.Errorf("/metrics loopgate_sockmap_messages_total{verdict=\"redirect\"} = %d, below /status's earlier %d", m, redirected)
	}
	t.Logf("%d messages redirected by the sockmap", redirected)
}

// firstDiff returns the index of the first byte where got differs from want
// (including a length difference), or -1 when they are equal.
func firstDiff(want, got []byte) int {
	for i := range min(len(want), len(got)) {
		if want[i] != got[i] {
			return i
		}
	}
	if len(want) != len(got) {
		return min(len(want), len(got))
	}
	return -1
}

// TestAccelSlowClientIsBounded: with --accel on, a client that reads a
// 128 MiB download slowly does not make the kernel queue the backend's
// stream for it. Redirected bytes skip TCP's flow control, so without the
// in-kernel bound the backend would push the whole body into loopgate's
// upstream socket at once; with it, that connection falls back to TCP
// once loopgate is 4 MiB behind (loopgate_sockmap_fallbacks_total), the
// host's TCP memory stays far below the body's size, and every byte
// arrives in order.
func TestAccelSlowClientIsBounded(t *testing.T) {
	bpftest.Require(t)
	const total = 128 << 20
	const bound = 64 << 20 // unbounded, about 120 MiB would be queued
	dir := appDir(t, `processesPerApplication="1"`, nil)
	l := startLoopgate(t, loopgatetest.Options{Args: []string{"--accel", "on", dir}})
	if code, body, err := get(client(t, 10*time.Second), l.URL("/")); err != nil || code != 200 {
		t.Fatalf("first GET / (starts the backend): %d %q %v", code, body, err)
	}
	before := l.Status(t).Acceleration.Fallbacks
	base := hostTCPMem(t)

	conn := dialRaw(t, l.Front, 60*time.Second)
	if _, err := fmt.Fprintf(conn, "GET /big?mb=%d HTTP/1.1\r\nHost: slow\r\n\r\n", total>>20); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReaderSize(conn, 64<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 || resp.ContentLength != total {
		t.Fatalf("GET /big: %v %v", resp, err)
	}
	var off int64
	buf := make([]byte, 256<<10)
	read := func(n int) {
		n, err := io.ReadFull(resp.Body, buf[:n])
		for i, b := range buf[:n] {
			if b != byte(off+int64(i)) { // testbackend's /big: byte(i) in each MiB
				t.Fatalf("byte %d of the body is %#x, want %#x", off+int64(i), b, byte(off+int64(i)))
			}
		}
		off += int64(n)
		if err != nil {
			t.Fatalf("reading the body at %d of %d: %v", off, total, err)
		}
	}
	// 4 MiB/s for 2 s, sampling the host's TCP memory.
	var peak int64
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
		read(40 << 10)
		peak = max(peak, hostTCPMem(t)-base)
		time.Sleep(10 * time.Millisecond)
	}
	for off < total {
		read(int(min(int64(len(buf)), total-off)))
	}
	after := l.Status(t).Acceleration.Fallbacks
	t.Logf("slow client: host TCP memory peaked %.1f MiB above its start; %d connection(s) fell back to TCP", float64(peak)/(1<<20), after-before)
	if peak > bound {
		t.Errorf("host TCP memory grew %d MiB while a client read %d MiB slowly, want at most %d MiB", peak>>20, total>>20, bound>>20)
	}
	if after <= before {
		t.Errorf("fallbacks %d before, %d after: the backend's stream to the slow client never fell back to TCP", before, after)
	}
	if m := uint64(metric(t, l, `loopgate_sockmap_fallbacks_total`)); m != after {
		t.Errorf("/metrics loopgate_sockmap_fallbacks_total = %d, /status says %d", m, after)
	}
}

// hostTCPMem is the TCP memory charged on the whole host, in bytes
// (/proc/net/sockstat "TCP: ... mem N", in pages).
func hostTCPMem(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		for i := 1; len(f) > 0 && f[0] == "TCP:" && i+1 < len(f); i += 2 {
			if f[i] == "mem" {
				pages, err := strconv.ParseInt(f[i+1], 10, 64)
				if err != nil {
					t.Fatalf("/proc/net/sockstat: %q: %v", line, err)
				}
				return pages * int64(os.Getpagesize())
			}
		}
	}
	t.Fatalf("/proc/net/sockstat has no TCP mem: %q", b)
	return 0
}

package reliability

import (
	"bufio"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loopgate/loopgate/bpf/bpftest"
	"github.com/loopgate/loopgate/internal/loopgatetest"
)

// TestSlowUploadRealBackend: through loopgate serve, with requestTimeout
// 00:00:02 in web.config, an upload that streams for about 4 s to the test
// backend's POST /upload (which reads it steadily and answers at its end)
// is answered 200 with the whole body, with --accel off and on.
// requestTimeout is the time waiting for the app, and this app was never
// idle (fastpath TestSlowUploadOutlivesRequestTimeout has the framings and
// HTTP/2).
func TestSlowUploadRealBackend(t *testing.T) {
	const (
		pieces = 20 // one every 200 ms
		piece  = 16 << 10
	)
	for _, accel := range []string{"off", "on"} {
		t.Run("accel="+accel, func(t *testing.T) {
			if accel == "on" {
				bpftest.Require(t)
			}
			dir := appDir(t, `requestTimeout="00:00:02"`, nil)
			l := startLoopgate(t, loopgatetest.Options{Args: []string{"--access-log=false", "--accel", accel, dir}})
			c := dialRaw(t, l.Front, 30*time.Second)
			if _, err := c.Write([]byte("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: " + strconv.Itoa(pieces*piece) + "\r\n\r\n")); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			p := []byte(strings.Repeat("x", piece))
			for i := 0; i < pieces; i++ {
				if _, err := c.Write(p); err != nil {
					t.Fatal(err)
				}
				time.Sleep(200 * time.Millisecond)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "POST"})
			if err != nil {
				t.Fatal(err)
			}
			body := make([]byte, 256)
			n, _ := resp.Body.Read(body)
			resp.Body.Close()
			want := "n=" + strconv.Itoa(pieces*piece) + " sum=" + strconv.Itoa(pieces*piece*'x')
			if resp.StatusCode != 200 || string(body[:n]) != want {
				t.Fatalf("an upload of %v, requestTimeout 2 s: %d %q, want 200 %q", time.Since(start).Round(time.Millisecond), resp.StatusCode, body[:n], want)
			}
			loopgatetest.KillAtCleanup(t, l.WaitReady(t, 1, 5*time.Second)...)
		})
	}
}

// TestClientGoneWhileBackendStopped: through loopgate serve, a client that
// resets its connection while loopgate is blocked writing its upload to an
// app that reads nothing (SIGSTOPped) frees the request and the upstream
// connection within about a second (/metrics), not at requestTimeout (30 s
// here); the app serves on once it runs again. With --accel off and on.
func TestClientGoneWhileBackendStopped(t *testing.T) {
	for _, accel := range []string{"off", "on"} {
		t.Run("accel="+accel, func(t *testing.T) {
			if accel == "on" {
				bpftest.Require(t)
			}
			dir := appDir(t, `requestTimeout="00:00:30"`, nil)
			l := startLoopgate(t, loopgatetest.Options{Args: []string{"--access-log=false", "--accel", accel, dir}})
			if code, _, err := get(client(t, 10*time.Second), l.URL("/")); err != nil || code != 200 {
				t.Fatalf("GET /: %d %v", code, err)
			}
			pid := l.WaitReady(t, 1, 5*time.Second)[0]
			loopgatetest.KillAtCleanup(t, pid)
			if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
			c := dialRaw(t, l.Front, 60*time.Second)
			if _, err := c.Write([]byte("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 29000000\r\n\r\n")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 64<<10)
			sent := 0
			for sent < 28_000_000 { // under maxAllowedContentLength's default 30,000,000
				_ = c.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
				n, err := c.Write(buf)
				sent += n
				if err != nil {
					break
				}
			}
			if sent >= 28_000_000 {
				t.Fatal("28 MB taken by a stopped app")
			}
			inFlight := `loopgate_app_requests_in_flight{app="/"}`
			busy := `loopgate_upstream_connections{app="/",state="busy"}`
			if metric(t, l, inFlight) != 1 || metric(t, l, busy) != 1 {
				t.Fatalf("before the reset: %v in flight, %v busy, want 1 and 1", metric(t, l, inFlight), metric(t, l, busy))
			}
			_ = c.(*net.TCPConn).SetLinger(0)
			at := time.Now()
			c.Close()
			for metric(t, l, inFlight) != 0 || metric(t, l, busy) != 0 {
				if d := time.Since(at); d > 3*time.Second {
					t.Fatalf("%v after the client's reset (%d bytes sent; requestTimeout 30 s): %v in flight, %v busy",
						d.Round(time.Millisecond), sent, metric(t, l, inFlight), metric(t, l, busy))
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Logf("--accel %s: request and upstream connection freed %v after the client's reset (%d bytes sent)", accel, time.Since(at).Round(time.Millisecond), sent)
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			if code, body, err := get(client(t, 10*time.Second), l.URL("/")); err != nil || code != 200 || body != "pid="+strconv.Itoa(pid)+"\n" {
				t.Errorf("after SIGCONT: %d %q %v, want 200 from pid %d", code, body, err, pid)
			}
		})
	}
}

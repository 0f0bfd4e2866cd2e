package fastpath

import (
	"bufio"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
)

// parkRig is a fasthttp backend and loopgate in front of it with cfg.
func parkRig(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	backend := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("ok") }}
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go backend.Serve(bln)
	t.Cleanup(func() { _ = backend.Shutdown() })
	app := &fakeApp{vpath: "/"}
	app.spec.Store(testSpec("/"))
	srv, err := New(cfg, []App{app}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	up := newUpstream(bln.Addr().String(), &srv.cfg)
	t.Cleanup(up.Close)
	app.setBackends(&fakeBackend{addr: bln.Addr().String(), token: "t", pid: 1, up: up})
	fln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeListener(fln, false)
	t.Cleanup(func() { _ = srv.Shutdown(t.Context()) })
	return srv, fln.Addr().String()
}

func parkGet(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET /p HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	var resp fasthttp.Response
	if err := resp.Read(br); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode() != 200 || string(resp.Body()) != "ok" {
		t.Fatalf("status %d body %q", resp.StatusCode(), resp.Body())
	}
}

// waitParked waits up to 5 s for n connections to be parked.
func waitParked(t *testing.T, srv *Server, n int) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); srv.park.poller.Len() != n; {
		if time.Now().After(end) {
			t.Fatalf("%d connections parked, want %d", srv.park.poller.Len(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestParkIdleConnection: a keep-alive connection idle past parkAfter is
// parked (out of fasthttp, in the poller), its next requests are served,
// pipelined ones too, a client close of a parked connection frees its
// slot, and Shutdown closes the parked ones.
func TestParkIdleConnection(t *testing.T) {
	srv, addr := parkRig(t, Config{})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	parkGet(t, c, br)
	if srv.park.poller.Len() != 0 {
		t.Fatal("parked at once")
	}
	waitParked(t, srv, 1)
	parkGet(t, c, br) // resumed
	waitParked(t, srv, 1)
	// Two pipelined requests in one write wake it once.
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, strings.Repeat("GET /p HTTP/1.1\r\nHost: a\r\n\r\n", 2)); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		var resp fasthttp.Response
		if err := resp.Read(br); err != nil || resp.StatusCode() != 200 {
			t.Fatalf("pipelined after parking: %d %v", resp.StatusCode(), err)
		}
	}

	// A parked connection the client closes is closed and its slot freed.
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	br2 := bufio.NewReader(c2)
	parkGet(t, c2, br2)
	waitParked(t, srv, 2)
	c2.Close()
	for end := time.Now().Add(5 * time.Second); srv.OpenConns() != 1; {
		if time.Now().After(end) {
			t.Fatalf("%d open connections after the client closed a parked one, want 1", srv.OpenConns())
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Shutdown closes the parked connection.
	waitParked(t, srv, 1)
	if err := srv.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("parked connection still open after Shutdown (read %d)", n)
	}
}

// TestParkBusyConnection: a keep-alive connection whose requests come
// closer together than parkAfter is never parked, though its idle waits
// keep an earlier wait's park deadline (parkSlack), and once idle it is
// parked no sooner than parkAfter-parkSlack after its last request.
func TestParkBusyConnection(t *testing.T) {
	srv, addr := parkRig(t, Config{})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for end := time.Now().Add(3 * parkAfter / 2); time.Now().Before(end); {
		parkGet(t, c, br)
		time.Sleep(parkSlack / 4)
	}
	if n := srv.park.parks.Load(); n != 0 {
		t.Fatalf("a connection busy every %v was parked %d times", parkSlack/4, n)
	}
	parkGet(t, c, br)
	last := time.Now()
	waitParked(t, srv, 1)
	if idle := time.Since(last); idle < parkAfter-parkSlack {
		t.Errorf("parked after %v idle, want at least %v", idle, parkAfter-parkSlack)
	}
	parkGet(t, c, br) // resumed
}

// TestParkedIdleTimeout: --idle-timeout closes a parked connection.
func TestParkedIdleTimeout(t *testing.T) {
	srv, addr := parkRig(t, Config{IdleTimeout: 2 * time.Second})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	parkGet(t, c, bufio.NewReader(c))
	waitParked(t, srv, 1)
	t0 := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("parked connection past --idle-timeout: read %v, want EOF", err)
	}
	if d := time.Since(t0); d > 4*time.Second {
		t.Errorf("closed %v after being parked, --idle-timeout 2s", d)
	}
}

// A keep-alive request whose head comes in pieces, the last more than
// parkAfter after the first, still has --header-read-timeout for its head:
// the park deadline of the wait that returned the first piece does not cut
// it (trackedConn holds fasthttp's head deadline until a read needs it), and
// a head never finished gets 408 at the header timeout.
func TestKeepAliveHeadInPiecesHasHeaderTimeout(t *testing.T) {
	const headerTimeout = 3 * time.Second
	_, addr := parkRig(t, Config{HeaderReadTimeout: headerTimeout, IdleTimeout: time.Minute})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	parkGet(t, c, br)
	if _, err := io.WriteString(c, "GET /p HTTP/1.1\r\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(parkAfter + parkAfter/2)
	if _, err := io.WriteString(c, "Host: a\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	var first fasthttp.Response
	if err := first.Read(br); err != nil || first.StatusCode() != 200 {
		t.Fatalf("head in two pieces %v apart: %d, %v; want 200", parkAfter+parkAfter/2, first.StatusCode(), err)
	}
	if _, err := io.WriteString(c, "GET /p HTTP/1.1\r\nHost: a\r\n"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(4 * headerTimeout))
	var resp fasthttp.Response
	if err := resp.Read(br); err != nil {
		t.Fatalf("unfinished head: %v after %v, want a 408", err, time.Since(start))
	}
	took := time.Since(start)
	if resp.StatusCode() != fasthttp.StatusRequestTimeout || took < headerTimeout-time.Second {
		t.Errorf("unfinished head: %d after %v, want 408 after about %v", resp.StatusCode(), took, headerTimeout)
	}
}

// TestReleaserBurstEnd: the sweep hands memory back at the end of every
// burst of parks, also when a release during the burst (releaseEvery)
// took all but a few of its parks. The ticks are those a bench-compare
// idle row logged: two steps of 5,000 connections parked 10 s apart; the
// second step's release at its end was missing, and its free heap (14 to
// 16 MiB) stayed resident.
func TestReleaserBurstEnd(t *testing.T) {
	var r releaser
	t0 := time.Unix(1000, 0)
	var got []int
	for sec, parks := range []uint64{0, 2658, 5000, 5000, 5000, 5000, 5000, 5000, 5000, 5000, 5000, 5000, 5000, 5000, 5000, 9609,
		10000, 10000, 10000, 10000, 10000, 10000, 10000, 10000, 10300, 10300, 10300, 10300, 10300} {
		if r.tick(parks, t0.Add(time.Duration(sec)*time.Second)) {
			got = append(got, sec)
		}
	}
	// 1: during the first burst (no release yet); 5: its end (3 quiet
	// ticks); 15: during the second, 10 s after the last; 19: its end,
	// though only 391 parks came after 15. The 300 parks at 24 make no
	// burst.
	if want := []int{1, 5, 15, 19}; !slices.Equal(got, want) {
		t.Errorf("releases at seconds %v, want %v", got, want)
	}
}

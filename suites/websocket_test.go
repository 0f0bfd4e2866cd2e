package suites

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/loopgatetest"
)

// within is how soon the other side of a tunnel must see one side's end.
const within = time.Second

// wsTarget is a way to reach the wsecho backend: directly or through
// loopgate.
type wsTarget struct {
	name string
	addr string
	tls  bool // addr is loopgate's TLS listener
	// plain reaches the same backend over plain HTTP (= addr unless tls).
	plain string
	// pid returns the backend process serving addr now.
	pid func(t *testing.T) int
}

// startWSEchoDirect runs wsecho on a kernel-picked port, killed and reaped
// at cleanup.
func startWSEchoDirect(t *testing.T) wsTarget {
	t.Helper()
	cmd := exec.Command(loopgatetest.Program(t, wsechoPkg))
	cmd.Env = append(os.Environ(), "ASPNETCORE_PORT=0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(waited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-waited:
		case <-time.After(5 * time.Second):
			t.Errorf("wsecho %d not reaped", cmd.Process.Pid)
		}
	})
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- s
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case s := <-line:
		addr, ok := strings.CutPrefix(strings.TrimSpace(s), "listening ")
		if !ok {
			t.Fatalf("wsecho printed %q", s)
		}
		pid := cmd.Process.Pid
		return wsTarget{name: "direct", addr: addr, plain: addr, pid: func(*testing.T) int { return pid }}
	case <-time.After(10 * time.Second):
		t.Fatal("wsecho did not print its address")
	}
	return wsTarget{}
}

// startWSEchoLoopgate hosts wsecho through a web.config behind loopgate,
// on a plain and a TLS listener; the second target is the TLS one.
func startWSEchoLoopgate(t *testing.T, args ...string) (wsTarget, wsTarget, *loopgatetest.Process) {
	t.Helper()
	dir := t.TempDir()
	app := filepath.Join(dir, "app")
	if err := os.Mkdir(app, 0o755); err != nil {
		t.Fatal(err)
	}
	writeWebConfig(t, app, loopgatetest.Program(t, wsechoPkg), "", "")
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	loopgatetest.WriteCert(t, cert, key, 1)
	l := startLoopgate(t, append(args, "--tls-listen", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key, app)...)
	pid := func(t *testing.T) int {
		t.Helper()
		pid, err := strconv.Atoi(httpGet(t, l.Front, "/pid"))
		if err != nil {
			t.Fatal(err)
		}
		loopgatetest.KillAtCleanup(t, pid)
		return pid
	}
	pid(t) // starts the backend
	tlsAddr := l.WaitLog(5*time.Second, func(x loopgatetest.Line) bool {
		return x.Str("event") == "listening" && x["tls"] == true
	}).Str("addr")
	if tlsAddr == "" {
		t.Fatal("loopgate did not log its TLS listener")
	}
	return wsTarget{name: "loopgate", addr: l.Front, plain: l.Front, pid: pid},
		wsTarget{name: "loopgate TLS", addr: tlsAddr, tls: true, plain: l.Front, pid: pid}, l
}

// httpGet fetches path from addr and returns the body of a 200.
func httpGet(t *testing.T, addr, path string) string {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s %q %v", path, resp.Status, b, err)
	}
	return string(b)
}

// transcript is what a client saw in one case: every frame, and whether
// the connection ended (EOF or reset are both an end: which one depends on
// whether the peer had unread input when it closed).
type transcript struct {
	frames []frame
	ended  bool
}

// step is one thing the client does: send frames, or read n frames.
type step struct {
	send []frame
	read int
}

type wsCase struct {
	name  string
	path  string
	steps []step // then the client reads until the connection ends
	check func(tr transcript) error
}

func run(t *testing.T, tg wsTarget, c wsCase) transcript {
	t.Helper()
	w, err := dialWS(tg.addr, c.path, tg.tls)
	if err != nil {
		t.Fatalf("%s: %v", tg.name, err)
	}
	defer w.c.Close()
	var tr transcript
	for _, s := range c.steps {
		if err := w.send(s.send...); err != nil {
			t.Fatalf("%s: send: %v", tg.name, err)
		}
		if s.read > 0 {
			fs, err := w.readFrames(s.read, 30*time.Second)
			tr.frames = append(tr.frames, fs...)
			if err != nil {
				t.Fatalf("%s: read %d frames: %v after %v", tg.name, s.read, err, tr.frames)
			}
		}
	}
	fs, e, _ := w.readUntilEnd(30 * time.Second)
	tr.frames = append(tr.frames, fs...)
	tr.ended = e == endEOF || e == endReset
	if !tr.ended {
		t.Errorf("%s: connection did not end: %s", tg.name, e)
	}
	return tr
}

func frames(fs ...frame) func(transcript) error {
	return func(tr transcript) error {
		if !reflect.DeepEqual(tr.frames, fs) {
			return fmt.Errorf("got %v, want %v", tr.frames, fs)
		}
		return nil
	}
}

func lastClose(code int) func(transcript) error {
	return func(tr transcript) error {
		if n := len(tr.frames); n == 0 || tr.frames[n-1].closeCode() != code {
			return fmt.Errorf("got %v, want a close frame with %d last", tr.frames, code)
		}
		return nil
	}
}

// TestWebSocketFrameCases sends each case's frames to wsecho directly and
// through loopgate and requires the same frames back, in the same order,
// and the same end: loopgate's tunnel must be byte-transparent whatever
// the frames are, valid or not.
func TestWebSocketFrameCases(t *testing.T) {
	big := make([]byte, 16<<20)
	_, _ = rand.Read(big)
	mid := bytes.Repeat([]byte("0123456789"), 1000)
	bye := closeFrame(1000, "")
	var echoed1000 = closeFrame(1000, "")
	cases := []wsCase{
		{name: "text and binary", path: "/echo",
			steps: []step{{send: []frame{text("hello"), binFrame([]byte{0, 1, 2, 255}), bye}}},
			check: frames(text("hello"), binFrame([]byte{0, 1, 2, 255}), echoed1000)},
		{name: "fragmented by the client, ping between fragments", path: "/echo",
			steps: []step{{send: []frame{
				{op: opText, payload: []byte("Hel")},
				{fin: true, op: opPing, payload: []byte("p")},
				{op: opCont, payload: []byte("lo, ")},
				{fin: true, op: opCont, payload: []byte("world")},
				bye}}},
			check: frames(frame{fin: true, op: opPong, payload: []byte("p")}, text("Hello, world"), echoed1000)},
		{name: "fragmented by the server", path: "/stream",
			steps: []step{{send: []frame{binFrame(mid), bye}}},
			check: func(tr transcript) error {
				var got []byte
				fs := tr.frames
				if len(fs) < 3 || fs[0].op != opBinary || fs[0].fin {
					return fmt.Errorf("want a fragmented binary message, got %v", fs)
				}
				for i, f := range fs[:len(fs)-1] {
					if i > 0 && f.op != opCont || f.fin != (i == len(fs)-2) {
						return fmt.Errorf("frame %d: %v", i, f)
					}
					got = append(got, f.payload...)
				}
				if !bytes.Equal(got, mid) {
					return fmt.Errorf("reassembled %d bytes, want the %d sent", len(got), len(mid))
				}
				return lastClose(1000)(tr)
			}},
		{name: "16 MiB frame both ways", path: "/echo",
			steps: []step{{send: []frame{binFrame(big), bye}}},
			check: frames(binFrame(big), echoed1000)},
		{name: "16 MiB in 4 client fragments", path: "/echo",
			steps: []step{{send: []frame{
				{op: opBinary, payload: big[:4<<20]}, {op: opCont, payload: big[4<<20 : 8<<20]},
				{op: opCont, payload: big[8<<20 : 12<<20]}, {fin: true, op: opCont, payload: big[12<<20:]}, bye}}},
			check: frames(binFrame(big), echoed1000)},
		{name: "ping, unsolicited pong", path: "/echo",
			steps: []step{{send: []frame{{fin: true, op: opPing, payload: []byte("abc")}, {fin: true, op: opPong, payload: []byte("nobody asked")}, text("x"), bye}}},
			check: frames(frame{fin: true, op: opPong, payload: []byte("abc")}, text("x"), echoed1000)},
		{name: "server ping, client pong", path: "/ping",
			steps: []step{{read: 1}, {send: []frame{{fin: true, op: opPong, payload: []byte("are you there")}}, read: 1}, {send: []frame{bye}}},
			check: frames(frame{fin: true, op: opPing, payload: []byte("are you there")}, text("pong:are you there"), echoed1000)},
		{name: "client close 4000 with reason", path: "/echo",
			steps: []step{{send: []frame{closeFrame(4000, "done here")}}},
			check: frames(closeFrame(4000, ""))},
		{name: "client close 1001", path: "/echo",
			steps: []step{{send: []frame{closeFrame(1001, "")}}},
			check: frames(closeFrame(1001, ""))},
		{name: "client close without status", path: "/echo",
			steps: []step{{send: []frame{{fin: true, op: opClose}}}},
			check: frames(frame{fin: true, op: opClose, payload: []byte{}})},
		{name: "server close 4001", path: "/echo",
			steps: []step{{send: []frame{text("close:4001")}}},
			check: frames(closeFrame(4001, "bye"))},
		{name: "server close 1011", path: "/echo",
			steps: []step{{send: []frame{text("close:1011")}}},
			check: frames(closeFrame(1011, "bye"))},
		// Protocol errors: the server answers with close 1002 and ends.
		{name: "unmasked client frame", path: "/echo",
			steps: []step{{send: []frame{{fin: true, op: opText, payload: []byte("x"), unmasked: true}}}},
			check: lastClose(1002)},
		{name: "reserved bit without an extension", path: "/echo",
			steps: []step{{send: []frame{{fin: true, rsv: 4, op: opText, payload: []byte("x")}}}},
			check: lastClose(1002)},
		{name: "reserved opcode", path: "/echo",
			steps: []step{{send: []frame{{fin: true, op: 0x3, payload: []byte("x")}}}},
			check: lastClose(1002)},
		{name: "fragmented ping", path: "/echo",
			steps: []step{{send: []frame{{op: opPing, payload: []byte("x")}}}},
			check: lastClose(1002)},
		{name: "ping over 125 bytes", path: "/echo",
			steps: []step{{send: []frame{{fin: true, op: opPing, payload: bytes.Repeat([]byte("p"), 126)}}}},
			check: lastClose(1002)},
		{name: "continuation without a start", path: "/echo",
			steps: []step{{send: []frame{{fin: true, op: opCont, payload: []byte("x")}}}},
			check: lastClose(1002)},
		{name: "new message inside a fragmented one", path: "/echo",
			steps: []step{{send: []frame{{op: opText, payload: []byte("a")}, text("b")}}},
			check: lastClose(1002)},
		{name: "close code 1005 on the wire", path: "/echo",
			steps: []step{{send: []frame{closeFrame(1005, "")}}},
			check: lastClose(1002)},
		{name: "close reason not UTF-8", path: "/echo",
			steps: []step{{send: []frame{closeFrame(1000, "\xff\xfe")}}},
			check: lastClose(1002)},
	}
	direct := startWSEchoDirect(t)
	proxied, proxiedTLS, _ := startWSEchoLoopgate(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := run(t, direct, c)
			if err := c.check(want); err != nil {
				t.Fatalf("direct (the case itself is wrong): %v", err)
			}
			for _, tg := range []wsTarget{proxied, proxiedTLS} {
				got := run(t, tg, c)
				if !reflect.DeepEqual(got, want) {
					t.Errorf("through %s %v ended=%v; direct %v ended=%v", tg.name, got.frames, got.ended, want.frames, want.ended)
				}
			}
		})
	}
}

// TestWebSocketEnds: every way one side of a WebSocket can end closes the
// other side within a second, through loopgate as directly.
func TestWebSocketEnds(t *testing.T) {
	direct := startWSEchoDirect(t)
	proxied, proxiedTLS, _ := startWSEchoLoopgate(t)
	for _, tg := range []wsTarget{direct, proxied, proxiedTLS} {
		t.Run(tg.name, func(t *testing.T) {
			// The server side ends; the client must see its connection end.
			for _, c := range []struct {
				name string
				do   func(t *testing.T, w *wsConn)
				want []frame
			}{
				{"server close frame then FIN", func(t *testing.T, w *wsConn) { _ = w.send(text("close:4001")) }, []frame{closeFrame(4001, "bye")}},
				{"server FIN without a close frame", func(t *testing.T, w *wsConn) { _ = w.send(text("drop")) }, nil},
				{"server SIGKILLed", func(t *testing.T, w *wsConn) {
					if err := syscall.Kill(tg.pid(t), syscall.SIGKILL); err != nil {
						t.Fatal(err)
					}
				}, nil},
			} {
				t.Run(c.name, func(t *testing.T) {
					w := openEchoed(t, tg)
					c.do(t, w)
					fs, e, took := w.readUntilEnd(5 * time.Second)
					t.Logf("client saw %s after %v", e, took)
					if e == endTimeout || took > within {
						t.Errorf("client saw %s after %v, want the end within %v", e, took, within)
					}
					if !reflect.DeepEqual(fs, c.want) {
						t.Errorf("client read %v before the end, want %v", fs, c.want)
					}
				})
			}
			if tg.name == "direct" {
				return // its only process was killed
			}
			// The client ends; the backend must see its session end.
			for _, c := range []struct {
				name string
				do   func(w *wsConn)
			}{
				{"client close frame then FIN", func(w *wsConn) { _ = w.send(closeFrame(1000, "")); w.c.Close() }},
				{"client FIN without a close frame", func(w *wsConn) { w.c.Close() }},
				{"client half-close", func(w *wsConn) { w.closeWrite() }},
				{"client reset", func(w *wsConn) { w.reset() }},
			} {
				t.Run(c.name, func(t *testing.T) {
					clientEnds(t, tg, c.do)
				})
			}
		})
	}
	// The client-side ends against the direct backend too, for reference.
	t.Run("direct client ends", func(t *testing.T) {
		d := startWSEchoDirect(t)
		clientEnds(t, d, func(w *wsConn) { w.c.Close() })
	})
}

// openEchoed opens a WebSocket session to /echo, closed at t's cleanup,
// and requires "hi" to come back.
func openEchoed(t *testing.T, tg wsTarget) *wsConn {
	t.Helper()
	w, err := dialWS(tg.addr, "/echo", tg.tls)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.c.Close() })
	if err := w.send(text("hi")); err != nil {
		t.Fatal(err)
	}
	if fs, err := w.readFrames(1, 10*time.Second); err != nil || !reflect.DeepEqual(fs, []frame{text("hi")}) {
		t.Fatalf("echo: %v %v", fs, err)
	}
	return w
}

// clientEnds opens a session, ends it from the client with do, and
// requires the backend to count no open session within a second.
func clientEnds(t *testing.T, tg wsTarget, do func(w *wsConn)) {
	t.Helper()
	w := openEchoed(t, tg)
	if n := httpGet(t, tg.plain, "/open"); n != "1" {
		t.Fatalf("backend counts %s open sessions, want 1", n)
	}
	start := time.Now()
	do(w)
	for httpGet(t, tg.plain, "/open") != "0" {
		if time.Since(start) > 5*time.Second {
			t.Fatal("backend session still open 5 s after the client ended")
		}
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(start)
	t.Logf("backend session ended within %v (polled)", took)
	if took > within {
		t.Errorf("backend saw the end after %v, want within %v", took, within)
	}
}

// TestWebSocketDrain: SIGTERM with a WebSocket open ends the session at
// once, stops the backend in time (no "backends did not stop in time;
// killed" in the log) and exits 0 with no backend left.
func TestWebSocketDrain(t *testing.T) {
	tg, _, l := startWSEchoLoopgate(t, "--drain-timeout", "5s")
	pid := tg.pid(t)
	w := openEchoed(t, tg)
	l.Signal(syscall.SIGTERM)
	_, e, took := w.readUntilEnd(10 * time.Second)
	t.Logf("client saw %s %v after SIGTERM", e, took)
	if e == endTimeout || took > within {
		t.Errorf("client saw %s %v after SIGTERM, want the end within %v", e, took, within)
	}
	if code := l.Wait(20 * time.Second); code != 0 {
		t.Errorf("loopgate exited %d after the drain, want 0", code)
	}
	loopgatetest.WaitDead(t, 5*time.Second, pid)
	if logged(l, "did not stop in time") || logged(l, "backend killed") {
		t.Error("the drain killed the backend instead of stopping it")
	}
}

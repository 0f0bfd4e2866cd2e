package bpf

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// requireBPF skips the test when this host cannot run the sockmap fast
// path, naming the reason; with LOOPGATE_REQUIRE_BPF=1 (CI) it fails
// instead, so an unsupported runner cannot pass the suite silently.
func requireBPF(tb testing.TB) {
	tb.Helper()
	err := Probe()
	if err == nil {
		return
	}
	if !errors.Is(err, ErrNotSupported) {
		tb.Fatalf("probing sockmap support: %v", err)
	}
	if os.Getenv("LOOPGATE_REQUIRE_BPF") == "1" {
		tb.Fatalf("LOOPGATE_REQUIRE_BPF=1 but sockmap acceleration is unavailable: %v", err)
	}
	tb.Skip(err)
}

// loadAccel loads an Accel for the test and closes it at cleanup.
func loadAccel(tb testing.TB, opts Options) *Accel {
	tb.Helper()
	requireBPF(tb)
	a, err := Load(opts)
	if err != nil {
		tb.Fatalf("Load(%+v): %v", opts, err)
	}
	tb.Cleanup(func() {
		if err := a.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return a
}

// listen opens a listener on a kernel-picked loopback port, closed at
// cleanup.
func listen(tb testing.TB) (*net.TCPListener, uint16) {
	tb.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	return ln, uint16(ln.Addr().(*net.TCPAddr).Port)
}

// plainConn hides the splice-based ReadFrom/WriteTo of *net.TCPConn, so
// io.Copy goes through a user-space buffer; splice(2) never sees bytes
// redirected by the sk_msg program.
type plainConn struct {
	io.Reader
	io.Writer
}

// echoServer accepts connections on ln and echoes every byte back through
// a buffer until the peer closes. Connections are closed at cleanup.
func echoServer(tb testing.TB, ln *net.TCPListener) {
	tb.Helper()
	done := make(chan struct{})
	tb.Cleanup(func() {
		ln.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			tb.Error("echo server did not stop")
		}
	})
	go func() {
		defer close(done)
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64<<10)
				io.CopyBuffer(plainConn{Writer: c}, plainConn{Reader: c}, buf)
			}()
		}
	}()
}

// dial connects to port on 127.0.0.1, closed at cleanup; every I/O on the
// connection must finish within the test's deadline.
func dial(tb testing.TB, port uint16) *net.TCPConn {
	tb.Helper()
	c, err := net.DialTCP("tcp4", nil, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// waitFor polls cond every 10 ms until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kernelObjects are the IDs of an Accel's programs and maps, which outlive
// the Accel's file descriptors while the kernel holds references.
type kernelObjects struct {
	progs map[string]ebpf.ProgramID
	maps  map[string]ebpf.MapID
}

func (a *Accel) kernelIDs() (kernelObjects, error) {
	ids := kernelObjects{progs: map[string]ebpf.ProgramID{}, maps: map[string]ebpf.MapID{}}
	for name, p := range map[string]*ebpf.Program{"sockops": a.objs.LoopgateSockops, "sk_msg": a.objs.LoopgateSkMsg} {
		info, err := p.Info()
		if err != nil {
			return ids, err
		}
		id, ok := info.ID()
		if !ok {
			return ids, errors.New("kernel does not report program IDs")
		}
		ids.progs[name] = id
	}
	for name, m := range map[string]*ebpf.Map{"sock_hash": a.objs.SockHash, "backend_ports": a.objs.BackendPorts, "counters": a.objs.Counters, "on_tcp": a.objs.OnTcp, "sock_addrs": a.objs.SockAddrs} {
		info, err := m.Info()
		if err != nil {
			return ids, err
		}
		id, ok := info.ID()
		if !ok {
			return ids, errors.New("kernel does not report map IDs")
		}
		ids.maps[name] = id
	}
	return ids, nil
}

// alive names the objects the kernel still holds.
func (k kernelObjects) alive() map[string]bool {
	alive := map[string]bool{}
	for name, id := range k.progs {
		if p, err := ebpf.NewProgramFromID(id); err == nil {
			p.Close()
			alive[name] = true
		}
	}
	for name, id := range k.maps {
		if m, err := ebpf.NewMapFromID(id); err == nil {
			m.Close()
			alive[name] = true
		}
	}
	return alive
}

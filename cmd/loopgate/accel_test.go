package main

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/loopgate/loopgate/bpf/bpftest"
)

// TestAccelLoaderPortsBeforeAttach: a backend port registered while the
// eBPF programs still load (the supervisor may start an app first) is
// added once they are attached, so the app's later connections are
// accelerated; until then the loader is an inert Sockmap.
func TestAccelLoaderPortsBeforeAttach(t *testing.T) {
	bpftest.Require(t)
	l := newAccelLoader("auto", zerolog.Nop())
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, struct{ io.Reader }{c}) }()
		}
	}()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	if err := l.AddPort(port); err != nil {
		t.Fatalf("AddPort while loading: %v", err)
	}
	if l.QueueLimit() <= 0 || l.Exclude(0) != nil {
		t.Fatalf("the loader before attach: QueueLimit %d, Exclude must do nothing", l.QueueLimit())
	}
	if st := l.status(); st.Active || st.Mode != "auto" {
		t.Errorf("status while loading: %+v, want auto and inactive", st)
	}
	l.load(accelCgroup())
	if err := l.wait(); err != nil {
		t.Fatalf("load: %v", err)
	}
	c, err := net.DialTimeout("tcp4", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	msg := []byte("through the sockmap")
	for range 10 {
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, make([]byte, len(msg))); err != nil {
			t.Fatal(err)
		}
	}
	if st := l.status(); !st.Active || st.Redirected == 0 {
		t.Errorf("status after attach and 10 round trips to the port registered before: %+v, want active with messages redirected", st)
	}
}

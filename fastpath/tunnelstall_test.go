package fastpath

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/loopgate/loopgate/configload"
	"github.com/loopgate/loopgate/internal/sockio"
)

// TestTunnelClientStopsReading: a WebSocket tunnel whose client stops
// reading while the app keeps sending is closed, both sides, once a write
// to the client has waited --send-timeout (it blocked forever, holding the
// app's connection): the app's connection is closed, the client's is
// reset, the exchange ends. Plain clients (the polled tunnel) and TLS
// clients (the goroutine relay).
func TestTunnelClientStopsReading(t *testing.T) {
	const sendTimeout = 2 * time.Second
	for _, mode := range []string{"plain", "TLS"} {
		t.Run(mode, func(t *testing.T) {
			flooding := make(chan time.Time, 1)
			backendSawClose := make(chan time.Time, 1)
			addr := rawBackend(t, func(c net.Conn) {
				if _, ok := answerUpgrade(c); !ok {
					return
				}
				flooding <- time.Now()
				chunk := []byte(strings.Repeat("f", 32<<10))
				// Bounded: the test fails long before this deadline.
				_ = c.SetWriteDeadline(time.Now().Add(60 * time.Second))
				for {
					if _, err := c.Write(chunk); err != nil {
						if !errors.Is(err, os.ErrDeadlineExceeded) {
							backendSawClose <- time.Now()
						}
						return
					}
				}
			})
			srv, client, _, b := openPlainOrTLSTunnel(t, mode, Config{SendTimeout: sendTimeout}, nil, addr)
			// From here the client reads nothing while the app floods.
			var start time.Time
			select {
			case start = <-flooding:
			case <-time.After(10 * time.Second):
				t.Fatal("the app never got the upgrade")
			}
			select {
			case closed := <-backendSawClose:
				if d := closed.Sub(start); d < sendTimeout-500*time.Millisecond {
					t.Errorf("the app's connection closed %v after the flood began, before --send-timeout %v could pass", d, sendTimeout)
				}
			case <-time.After(sendTimeout + 15*time.Second):
				t.Fatalf("the app's connection still open %v after its flood began toward a client that reads nothing (--send-timeout %v)",
					time.Since(start), sendTimeout)
			}
			// The client's connection is closed too: reading what was
			// queued for it ends (EOF or a reset), it does not wait.
			_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err := io.Copy(io.Discard, client)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Errorf("the client's connection still open after the app's closed")
			}
			waitFor(t, func() bool { return b.released.Load() == 1 && srv.InFlight() == 0 }, "the tunnel's exchange ends")
		})
	}
}

// TestTunnelAppStopsReading: the other way round, a tunnel whose app stops
// reading while the client keeps sending is closed, both sides, once a
// write to the app has waited requestTimeout (the app's inactivity bound):
// the app's connection is reset, the client's ends, the exchange ends.
func TestTunnelAppStopsReading(t *testing.T) {
	const requestTimeout = 2 * time.Second
	for _, mode := range []string{"plain", "TLS"} {
		t.Run(mode, func(t *testing.T) {
			upgraded := make(chan time.Time, 1)
			appSawEnd := make(chan time.Time, 1)
			addr := rawBackend(t, func(c net.Conn) {
				if _, ok := answerUpgrade(c); !ok {
					return
				}
				upgraded <- time.Now()
				// Reads nothing more: watches its connection end.
				for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
					if st := sockio.PeerEnded(c); st.Reset || st.Finished {
						appSawEnd <- time.Now()
						return
					}
				}
			})
			srv, client, br, b := openPlainOrTLSTunnel(t, mode, Config{}, func(s *configload.AppSpec) { s.RequestTimeout = requestTimeout }, addr)
			var start time.Time
			select {
			case start = <-upgraded:
			case <-time.After(10 * time.Second):
				t.Fatal("the app never got the upgrade")
			}
			clientEnded := make(chan error, 1)
			go func() {
				// The client reads (nothing comes) to see its end.
				_ = client.SetReadDeadline(time.Now().Add(requestTimeout + 20*time.Second))
				_, err := io.Copy(io.Discard, br)
				clientEnded <- err
			}()
			go func() {
				chunk := []byte(strings.Repeat("c", 32<<10))
				_ = client.SetWriteDeadline(time.Now().Add(requestTimeout + 20*time.Second))
				for {
					if _, err := client.Write(chunk); err != nil {
						return
					}
				}
			}()
			select {
			case ended := <-appSawEnd:
				if d := ended.Sub(start); d < requestTimeout-500*time.Millisecond {
					t.Errorf("the app's connection ended %v after the upgrade, before requestTimeout %v could pass", d, requestTimeout)
				}
			case <-time.After(requestTimeout + 15*time.Second):
				t.Fatalf("the app's connection still open %v after it stopped reading a client that keeps sending (requestTimeout %v)",
					time.Since(start), requestTimeout)
			}
			select {
			case err := <-clientEnded:
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Errorf("the client's connection still open after the app's ended")
				}
			case <-time.After(requestTimeout + 25*time.Second):
				t.Fatal("the client's read never ended")
			}
			waitFor(t, func() bool { return b.released.Load() == 1 && srv.InFlight() == 0 }, "the tunnel's exchange ends")
		})
	}
}

// openPlainOrTLSTunnel opens a WebSocket tunnel to the app at addr through a server
// with cfg, over a plain or a TLS ("TLS") client connection, the app's spec
// edited by spec (nil: as it is): it returns the server, the client's
// connection (its deadline 10 s away), the reader the 101 was read from
// and the app's backend.
func openPlainOrTLSTunnel(t *testing.T, mode string, cfg Config, spec func(*configload.AppSpec), addr string) (*Server, net.Conn, *bufio.Reader, *fakeBackend) {
	t.Helper()
	var (
		srv    *Server
		client net.Conn
		b      *fakeBackend
	)
	if mode == "plain" {
		h := newHarness(t, cfg, "/")
		if spec != nil {
			h.setSpec("/", spec)
		}
		b, srv = h.backend("/", addr), h.srv
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		client = c
	} else {
		h := newTLSHarness(t, cfg)
		if spec != nil {
			h.setSpec(spec)
		}
		up := newUpstream(addr, &h.srv.cfg)
		t.Cleanup(up.Close)
		b = &fakeBackend{addr: addr, token: "h2-token", pid: 77, up: up}
		h.app.addBackend(b)
		srv = h.srv
		c, err := tls.Dial("tcp", h.addr, &tls.Config{RootCAs: h.roots, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		client = c
	}
	t.Cleanup(func() { client.Close() })
	_ = client.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(client, wsUpgrade); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReaderSize(client, 16)
	if r, err := http.ReadResponse(br, &http.Request{Method: "GET"}); err != nil || r.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", r, err)
	}
	return srv, client, br, b
}

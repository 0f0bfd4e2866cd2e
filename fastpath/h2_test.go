package fastpath

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/loopgate/loopgate/configload"
	"github.com/loopgate/loopgate/supervisor"
)

// tlsHarness is a front server with one TLS listener and one app at "/".
type tlsHarness struct {
	t     testing.TB
	srv   *Server
	addr  string
	app   *fakeApp
	roots *x509.CertPool
	caPEM []byte
}

func newTLSHarness(t testing.TB, cfg Config) *tlsHarness {
	t.Helper()
	dir := t.TempDir()
	ca := newTestCA(t, "h2 CA")
	c, k, _ := ca.issue(t, "loopgate", 2, false)
	cfg.TLSCertFile, cfg.TLSKeyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cfg.TLSCertFile, c, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.TLSKeyFile, k, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.TLSListen = []string{"127.0.0.1:0"}
	app := &fakeApp{vpath: "/"}
	app.spec.Store(testSpec("/"))
	srv, err := New(cfg, []App{app}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		select {
		case <-served:
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after Shutdown")
		}
	})
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	return &tlsHarness{t: t, srv: srv, addr: srv.Addrs()[0].String(), app: app, roots: roots, caPEM: ca.pem}
}

// backend serves the app with an in-process HTTP/1.1 server.
func (h *tlsHarness) backend(handler http.HandlerFunc) {
	bs := httptest.NewServer(handler)
	h.t.Cleanup(bs.Close)
	addr := strings.TrimPrefix(bs.URL, "http://")
	up := newUpstream(addr, &h.srv.cfg)
	h.t.Cleanup(up.Close)
	h.app.addBackend(&fakeBackend{addr: addr, token: "h2-token", pid: 77, up: up})
}

func (h *tlsHarness) setSpec(edit func(*configload.AppSpec)) {
	s := *h.app.spec.Load()
	edit(&s)
	h.app.spec.Store(&s)
}

// client returns an HTTP/2 client (h2) or an HTTP/1.1-only client over TLS.
func (h *tlsHarness) client(h2 bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: h.roots}, DisableCompression: true}
	if h2 {
		tr.ForceAttemptHTTP2 = true
	} else {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	h.t.Cleanup(tr.CloseIdleConnections)
	return c
}

func (h *tlsHarness) url(path string) string { return "https://" + h.addr + path }

// TestForwardingConformanceBothProtocols runs one table over HTTP/1.1 and
// HTTP/2 on the same TLS listener: what the app sees and what the client
// gets must not depend on the front protocol.
func TestForwardingConformanceBothProtocols(t *testing.T) {
	type check func(t *testing.T, h *tlsHarness, c *http.Client, h2 bool)
	cases := []struct {
		name string
		run  check
	}{
		{"headers seen by the app", func(t *testing.T, h *tlsHarness, c *http.Client, h2 bool) {
			seen := make(chan http.Header, 1)
			h.backend(func(w http.ResponseWriter, r *http.Request) {
				hd := r.Header.Clone()
				hd.Set("X-Target", r.RequestURI)
				hd.Set("X-Host", r.Host)
				seen <- hd
				w.Header().Add("Set-Cookie", "a=1")
				w.Header().Add("Set-Cookie", "b=2")
				_, _ = io.WriteString(w, "ok")
			})
			req, _ := http.NewRequest("GET", h.url("/p%2Fq?x=1"), nil)
			req.Header.Set("MS-ASPNETCORE-TOKEN", "forged")
			req.Header.Set("Ms-Aspnetcore-Event", "shutdown")
			req.Header.Set("X-Forwarded-For", "192.0.2.1")
			req.Header.Set("X-Forwarded-Proto", "http")
			req.Header.Set("Cookie", "k=v")
			resp := do(t, c, req, h2)
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(body) != "ok" {
				t.Fatalf("status %d body %q", resp.StatusCode, body)
			}
			if got := resp.Header.Values("Set-Cookie"); len(got) != 2 {
				t.Errorf("Set-Cookie %q", got)
			}
			hd := recv(t, seen)
			if v := hd.Values("Ms-Aspnetcore-Token"); len(v) != 1 || v[0] != "h2-token" {
				t.Errorf("token %q", v)
			}
			if v := hd.Values("Ms-Aspnetcore-Event"); len(v) != 0 {
				t.Errorf("forged event reached the app: %q", v)
			}
			xff := hd.Get("X-Forwarded-For")
			if !strings.HasPrefix(xff, "192.0.2.1, 127.0.0.1:") {
				t.Errorf("X-Forwarded-For %q", xff)
			}
			if v := hd.Get("X-Forwarded-Proto"); v != "http, https" {
				t.Errorf("X-Forwarded-Proto %q", v)
			}
			if hd.Get("X-Target") != "/p%2Fq?x=1" || hd.Get("X-Host") != h.addr || hd.Get("Cookie") != "k=v" {
				t.Errorf("target %q host %q cookie %q", hd.Get("X-Target"), hd.Get("X-Host"), hd.Get("Cookie"))
			}
		}},
		{"upload with length and without", func(t *testing.T, h *tlsHarness, c *http.Client, h2 bool) {
			h.backend(func(w http.ResponseWriter, r *http.Request) {
				n, _ := io.Copy(io.Discard, r.Body)
				fmt.Fprintf(w, "%d %d %v", n, r.ContentLength, r.TransferEncoding)
			})
			const size = 3 << 20
			for _, known := range []bool{true, false} {
				var body io.Reader = io.LimitReader(&pattern{}, size)
				if !known {
					body = io.MultiReader(body) // hides the length
				}
				req, _ := http.NewRequest("POST", h.url("/up"), body)
				if known {
					req.ContentLength = size
				}
				resp := do(t, c, req, h2)
				got, _ := io.ReadAll(resp.Body)
				want := fmt.Sprintf("%d %d []", size, size)
				if !known {
					want = fmt.Sprintf("%d -1 [chunked]", size)
				}
				if resp.StatusCode != 200 || string(got) != want {
					t.Errorf("known=%v: status %d, app saw %q, want %q", known, resp.StatusCode, got, want)
				}
			}
		}},
		{"download streams", func(t *testing.T, h *tlsHarness, c *http.Client, h2 bool) {
			// The app holds the rest back until the client has the first
			// chunk, so a forwarder that buffered would never deliver it
			// (no timing assumptions: the shared CI machine is noisy).
			gotFirst := make(chan struct{})
			var heldBack atomic.Bool
			h.backend(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.WriteString(w, "first")
				w.(http.Flusher).Flush()
				select {
				case <-gotFirst:
				case <-time.After(5 * time.Second):
					heldBack.Store(true)
				}
				_, _ = io.Copy(w, io.LimitReader(&pattern{}, 2<<20))
			})
			req, _ := http.NewRequest("GET", h.url("/s"), nil)
			resp := do(t, c, req, h2)
			buf := make([]byte, 5)
			if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first" {
				t.Fatalf("first chunk %q %v", buf, err)
			}
			close(gotFirst)
			n, err := io.Copy(io.Discard, resp.Body)
			if err != nil || n != 2<<20 {
				t.Fatalf("rest %d %v", n, err)
			}
			if heldBack.Load() {
				t.Error("the first chunk reached the client only after the app gave up waiting for it: not streamed")
			}
		}},
		{"502.5 start failure", func(t *testing.T, h *tlsHarness, c *http.Client, h2 bool) {
			h.app.setOutcome(supervisor.StartFailed)
			req, _ := http.NewRequest("GET", h.url("/"), nil)
			resp := do(t, c, req, h2)
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 502 || !bytes.Equal(body, render502_5("", outputRelayed)) || resp.Header.Get("Content-Type") != "text/html" {
				t.Errorf("status %d type %q body %.60q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
		}},
		{"502.3 requestTimeout", func(t *testing.T, h *tlsHarness, c *http.Client, h2 bool) {
			h.setSpec(func(s *configload.AppSpec) { s.RequestTimeout = 200 * time.Millisecond })
			h.backend(func(w http.ResponseWriter, r *http.Request) { time.Sleep(time.Second) })
			req, _ := http.NewRequest("GET", h.url("/"), nil)
			resp := do(t, c, req, h2)
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 502 || !bytes.Equal(body, page502_3Timeout(200*time.Millisecond)) {
				t.Errorf("status %d body %.60q", resp.StatusCode, body)
			}
		}},
		{"413 over maxAllowedContentLength", func(t *testing.T, h *tlsHarness, c *http.Client, h2 bool) {
			h.setSpec(func(s *configload.AppSpec) { s.MaxAllowedContentLength = 1000 })
			var reached atomic.Int64
			h.backend(func(w http.ResponseWriter, r *http.Request) { reached.Add(1) })
			for _, known := range []bool{true, false} {
				var body io.Reader = io.LimitReader(&pattern{}, 50000)
				if !known {
					body = io.MultiReader(body)
				}
				req, _ := http.NewRequest("POST", h.url("/"), body)
				if known {
					req.ContentLength = 50000
				}
				resp, err := c.Do(req)
				if err != nil {
					if known {
						t.Fatalf("known length: %v", err)
					}
					continue // cut while sending: the answer may race the upload
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 413 {
					t.Errorf("known=%v: status %d", known, resp.StatusCode)
				}
				if n := reached.Load(); known && n != 0 {
					t.Errorf("a too large body with a declared length reached the app %d times", n)
				}
			}
		}},
		{"app_offline 503", func(t *testing.T, h *tlsHarness, c *http.Client, h2 bool) {
			h.app.offline = []byte("<html>down for maintenance</html>")
			h.app.setOutcome(supervisor.Offline)
			req, _ := http.NewRequest("GET", h.url("/"), nil)
			resp := do(t, c, req, h2)
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 503 || string(body) != "<html>down for maintenance</html>" || resp.Header.Get("Content-Type") != "text/html" {
				t.Errorf("status %d body %q", resp.StatusCode, body)
			}
		}},
		{"103 early hints", func(t *testing.T, h *tlsHarness, c *http.Client, h2 bool) {
			h.backend(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Add("Link", "</style.css>; rel=preload; as=style")
				w.Header().Add("Link", "</app.js>; rel=preload; as=script")
				w.WriteHeader(http.StatusEarlyHints)
				w.Header().Del("Link")
				_, _ = io.WriteString(w, "page")
			})
			var hints []string
			trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, hd textproto.MIMEHeader) error {
				if code == http.StatusEarlyHints {
					hints = append(hints, hd.Values("Link")...)
				}
				return nil
			}}
			req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", h.url("/"), nil)
			resp := do(t, c, req, h2)
			body, _ := io.ReadAll(resp.Body)
			want := []string{"</style.css>; rel=preload; as=style", "</app.js>; rel=preload; as=script"}
			if resp.StatusCode != 200 || string(body) != "page" || !slices.Equal(hints, want) || resp.Header.Get("Link") != "" {
				t.Errorf("status %d body %q, 103 links %q (want %q), final Link %q", resp.StatusCode, body, hints, want, resp.Header.Get("Link"))
			}
		}},
		{"trailers", func(t *testing.T, h *tlsHarness, c *http.Client, h2 bool) {
			h.backend(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Trailer", "X-Checksum, Server-Timing, Set-Cookie, X-Dup")
				w.Header().Set("X-Dup", "head")
				_, _ = io.WriteString(w, "body")
				w.(http.Flusher).Flush()
				w.Header().Set("X-Checksum", "abc")
				w.Header().Set("Server-Timing", "db;dur=53")
				w.Header().Set("Set-Cookie", "a=b")
				w.Header().Set("X-Dup", "trailer")
			})
			req, _ := http.NewRequest("GET", h.url("/"), nil)
			resp := do(t, c, req, h2)
			body, _ := io.ReadAll(resp.Body)
			// Set-Cookie may not be a trailer, X-Dup repeats a head field.
			want := http.Header{"X-Checksum": {"abc"}, "Server-Timing": {"db;dur=53"}}
			if string(body) != "body" || !reflect.DeepEqual(resp.Trailer, want) || resp.Header.Get("X-Dup") != "head" {
				t.Errorf("body %q trailers %v, want %v; X-Dup %q", body, resp.Trailer, want, resp.Header.Get("X-Dup"))
			}
			// The announcement (refused by fasthttp for Set-Cookie) is
			// not forwarded under any name.
			for k, v := range resp.Header {
				if strings.Contains(strings.ToLower(k), "railer") {
					t.Errorf("head field %s: %v reached the client", k, v)
				}
			}
		}},
	}
	for _, tc := range cases {
		for _, h2 := range []bool{false, true} {
			name := tc.name + "/http1.1"
			if h2 {
				name = tc.name + "/h2"
			}
			t.Run(name, func(t *testing.T) {
				h := newTLSHarness(t, Config{})
				tc.run(t, h, h.client(h2), h2)
			})
		}
	}
}

// do sends req and checks the protocol the response came in.
func do(t *testing.T, c *http.Client, req *http.Request, h2 bool) *http.Response {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if want := map[bool]int{false: 1, true: 2}[h2]; resp.ProtoMajor != want {
		t.Fatalf("answered in %s, want HTTP/%d", resp.Proto, want)
	}
	return resp
}

func TestH2Disabled(t *testing.T) {
	h := newTLSHarness(t, Config{DisableHTTP2: true})
	h.backend(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	resp, err := h.client(true).Get(h.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 1 || resp.StatusCode != 200 {
		t.Errorf("with --h2=false: %s %d", resp.Proto, resp.StatusCode)
	}
}

package fastpath

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2/hpack"
)

// rawH2 is a client speaking HTTP/2 frames by hand, to misbehave.
type rawH2 struct {
	t  *testing.T
	c  *tls.Conn
	hb bytes.Buffer
	he *hpack.Encoder
}

func dialRawH2(t *testing.T, h *tlsHarness) *rawH2 {
	t.Helper()
	c, err := tls.Dial("tcp", h.addr, &tls.Config{RootCAs: h.roots, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN chose %q", p)
	}
	r := &rawH2{t: t, c: c}
	r.he = hpack.NewEncoder(&r.hb)
	_, _ = io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	_, _ = c.Write(h2frame(0x4, 0, 0, nil)) // SETTINGS
	return r
}

func h2frame(typ, flags byte, stream uint32, payload []byte) []byte {
	f := make([]byte, 9, 9+len(payload))
	f[0], f[1], f[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
	f[3], f[4] = typ, flags
	binary.BigEndian.PutUint32(f[5:], stream)
	return append(f, payload...)
}

func (r *rawH2) block(path, authority string) []byte {
	r.hb.Reset()
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", authority}, {":path", path}} {
		_ = r.he.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	return append([]byte(nil), r.hb.Bytes()...)
}

// closedWithin reads frames until the server sends GOAWAY or the
// connection ends; false if neither happens within d.
func (r *rawH2) closedWithin(d time.Duration) (goaway bool, closed bool) {
	_ = r.c.SetReadDeadline(time.Now().Add(d))
	var hdr [9]byte
	for {
		if _, err := io.ReadFull(r.c, hdr[:]); err != nil {
			return goaway, !isTimeout(err)
		}
		n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		if _, err := io.CopyN(io.Discard, r.c, int64(n)); err != nil {
			return goaway, !isTimeout(err)
		}
		if hdr[3] == 0x7 {
			goaway = true
		}
	}
}

// floodHarness has a stream limit of maxStreams and a backend that counts
// requests and their peak concurrency; /slow takes 500 ms.
func floodHarness(t *testing.T, maxStreams int) (*tlsHarness, *atomic.Int64, *atomic.Int64) {
	h := newTLSHarness(t, Config{HTTP2MaxConcurrentStreams: maxStreams})
	var total, cur, peak atomic.Int64
	h.backend(func(w http.ResponseWriter, r *http.Request) {
		total.Add(1)
		n := cur.Add(1)
		defer cur.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		if r.URL.Path == "/slow" {
			time.Sleep(500 * time.Millisecond)
		}
		_, _ = io.WriteString(w, "ok")
	})
	return h, &total, &peak
}

// healthy checks that another HTTP/2 client is served.
func healthy(t *testing.T, h *tlsHarness) {
	t.Helper()
	resp, err := h.client(true).Get(h.url("/"))
	if err != nil {
		t.Fatalf("another client: %v", err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || string(b) != "ok" || resp.ProtoMajor != 2 {
		t.Fatalf("another client: %s %d %q", resp.Proto, resp.StatusCode, b)
	}
}

// TestH2StreamLimitIsConfigured: the stream limit the flood tests lean on
// is the one loopgate configures, not the library's default (250): a
// client opening 12 slow streams at once gets exactly the limit through to
// the app, the rest refused (RST_STREAM REFUSED_STREAM or PROTOCOL_ERROR).
func TestH2StreamLimitIsConfigured(t *testing.T) {
	for _, limit := range []int{5, 8} {
		t.Run(strconv.Itoa(limit), func(t *testing.T) {
			h, total, peak := floodHarness(t, limit)
			r := dialRawH2(t, h)
			var buf bytes.Buffer
			for i := range 12 {
				buf.Write(h2frame(0x1, 0x5, uint32(2*i+1), r.block("/slow", h.addr))) // HEADERS, END_STREAM|END_HEADERS
			}
			if _, err := r.c.Write(buf.Bytes()); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for total.Load() < int64(limit) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(300 * time.Millisecond) // within the first requests' 500 ms: more would overlap them
			if n, p := total.Load(), peak.Load(); n != int64(limit) || p != int64(limit) {
				t.Errorf("stream limit %d: the app saw %d requests, %d at once; want %d and %d", limit, n, p, limit, limit)
			}
		})
	}
}

// TestH2RapidReset opens and cancels streams as fast as it can
// (CVE-2023-44487): the app never sees more concurrent requests than the
// stream limit, the connection is closed, and other clients are served.
//
// The defense is the standard library's HTTP/2 server (net/http's bundled
// copy of x/net/http2, Go 1.21.3 and later): a handler counts against
// MaxConcurrentStreams until it returns, even when the client has reset its
// stream, so resets do not free slots; streams beyond the limit wait in a
// queue, and a connection queueing more than 4 x MaxConcurrentStreams of
// them is closed with GOAWAY ENHANCE_YOUR_CALM. loopgate sets the limit
// (HTTP2MaxConcurrentStreams, checked by TestH2StreamLimitIsConfigured)
// and ends a reset stream's exchange at once (TestH2ClientResetClosesBackend).
func TestH2RapidReset(t *testing.T) {
	h, total, peak := floodHarness(t, 5)
	r := dialRawH2(t, h)
	const streams = 3000
	go func() {
		var buf bytes.Buffer
		for i := range streams {
			id := uint32(2*i + 1)
			buf.Write(h2frame(0x1, 0x5, id, r.block("/slow", h.addr))) // HEADERS, END_STREAM|END_HEADERS
			buf.Write(h2frame(0x3, 0, id, []byte{0, 0, 0, 8}))         // RST_STREAM CANCEL
			if buf.Len() > 32<<10 {
				if _, err := r.c.Write(buf.Bytes()); err != nil {
					return
				}
				buf.Reset()
			}
		}
		_, _ = r.c.Write(buf.Bytes())
	}()
	healthy(t, h)
	goaway, closed := r.closedWithin(10 * time.Second)
	if !goaway && !closed {
		t.Errorf("rapid-reset connection neither got GOAWAY nor was closed")
	}
	if p := peak.Load(); p > 5 {
		t.Errorf("app saw %d concurrent requests from one connection, stream limit 5", p)
	}
	if n := total.Load(); n >= streams/2 {
		t.Errorf("app saw %d of %d reset streams", n, streams)
	}
	healthy(t, h)
}

// TestH2ContinuationFlood sends an endless header block in CONTINUATION
// frames (CVE-2024-27316): the connection is closed long before the
// flood ends and the app sees nothing.
//
// The defense is the standard library's HTTP/2 server (Go 1.22.2 and
// later): it decodes a header block as its frames arrive and counts the
// decoded size against the header list limit (MaxHeaderBytes, which
// loopgate sets from --max-header-bytes); past the limit it keeps decoding
// (HPACK state must stay in step) without storing fields, and once the
// block's frames exceed the limit by a fixed allowance it closes the
// connection instead of reading on.
func TestH2ContinuationFlood(t *testing.T) {
	h, total, _ := floodHarness(t, 5)
	r := dialRawH2(t, h)
	sent := make(chan int64, 1)
	go func() {
		var n int64
		defer func() { sent <- n }()
		if _, err := r.c.Write(h2frame(0x1, 0x1, 1, r.block("/", h.addr))); err != nil { // HEADERS, END_STREAM only
			return
		}
		val := strings.Repeat("a", 1000)
		for range 20000 { // 20 MB of headers if nobody stops it
			r.hb.Reset()
			_ = r.he.WriteField(hpack.HeaderField{Name: "x-flood", Value: val, Sensitive: true})
			w, err := r.c.Write(h2frame(0x9, 0, 1, r.hb.Bytes())) // CONTINUATION, no END_HEADERS
			n += int64(w)
			if err != nil {
				return
			}
		}
	}()
	goaway, closed := r.closedWithin(10 * time.Second)
	if !goaway && !closed {
		t.Fatalf("CONTINUATION flood: connection neither got GOAWAY nor was closed")
	}
	_ = r.c.Close()
	select {
	case n := <-sent:
		if n > 5<<20 {
			t.Errorf("server read %d bytes of one header block before stopping", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("flood writer did not stop")
	}
	if n := total.Load(); n != 0 {
		t.Errorf("app saw %d requests", n)
	}
	healthy(t, h)
}

// TestCurlHTTP2 uses Debian's curl, a real HTTP/2 client.
func TestCurlHTTP2(t *testing.T) {
	v, err := exec.Command("curl", "-V").Output()
	if err != nil || !strings.Contains(string(v), "HTTP2") {
		t.Skip("curl with HTTP/2 support not installed")
	}
	h := newTLSHarness(t, Config{})
	seen := make(chan string, 1)
	h.backend(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get("X-Forwarded-Proto") + " " + r.Header.Get("Ms-Aspnetcore-Token")
		_, _ = io.WriteString(w, "hello over h2")
	})
	ca := t.TempDir() + "/ca.pem"
	if err := writeFile(ca, h.caPEM); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("curl", "--http2", "-sS", "--max-time", "10", "--cacert", ca,
		"-w", "\n%{http_version} %{response_code}", h.url("/curl")).CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	if got := string(out); got != "hello over h2\n2 200" {
		t.Errorf("curl got %q", got)
	}
	if s := recv(t, seen); s != "https h2-token" {
		t.Errorf("app saw %q", s)
	}
}

func writeFile(name string, b []byte) error { return os.WriteFile(name, b, 0o600) }

package fastpath

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/loopgate/loopgate/configload"
)

// BenchmarkH2CUnary is a unary gRPC call at the HTTP level (POST of 16
// bytes with Content-Type application/grpc, 16 bytes back and the
// grpc-status trailer), from an HTTP/2 client, one call at a time:
//
//   - path=direct: to the app itself, h2c (the floor);
//   - path=h2c: through loopgate's TLS listener to the app over h2c
//     (backendProtocol="h2c");
//   - path=http1: through loopgate's TLS listener to the same handler
//     over HTTP/1.1 (the trailer travels chunked), the path apps had
//     before h2c.
//
// Compare with benchstat -col /path.
func BenchmarkH2CUnary(b *testing.B) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status")
		_, _ = w.Write([]byte("0123456789abcdef"))
		w.Header().Set("Grpc-Status", "0")
	})
	h2cApp := httptest.NewUnstartedServer(handler)
	h2cApp.Config.Protocols = new(http.Protocols)
	h2cApp.Config.Protocols.SetHTTP1(true)
	h2cApp.Config.Protocols.SetUnencryptedHTTP2(true)
	h2cApp.Start()
	defer h2cApp.Close()
	addr := strings.TrimPrefix(h2cApp.URL, "http://")

	direct := &http.Transport{Protocols: new(http.Protocols)}
	direct.Protocols.SetUnencryptedHTTP2(true)
	defer direct.CloseIdleConnections()

	for _, path := range []string{"direct", "h2c", "http1"} {
		b.Run("path="+path, func(b *testing.B) {
			c := &http.Client{Transport: direct}
			url := h2cApp.URL + "/svc/Call"
			if path != "direct" {
				h := newTLSHarness(b, Config{})
				up := newUpstream(addr, &h.srv.cfg)
				defer up.Close()
				h.app.addBackend(&fakeBackend{addr: addr, token: "t", pid: 1, up: up})
				if path == "h2c" {
					h.setSpec(func(s *configload.AppSpec) { s.BackendProtocol = configload.BackendH2C })
				}
				tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: h.roots}, ForceAttemptHTTP2: true, DisableCompression: true}
				defer tr.CloseIdleConnections()
				c = &http.Client{Transport: tr}
				url = h.url("/svc/Call")
			}
			body := []byte("0123456789abcdef")
			call := func() {
				req, _ := http.NewRequestWithContext(context.Background(), "POST", url, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/grpc")
				req.Header.Set("Te", "trailers")
				resp, err := c.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || n != 16 || resp.ProtoMajor != 2 || resp.Trailer.Get("Grpc-Status") != "0" {
					b.Fatalf("%d %d %s %v", resp.StatusCode, n, resp.Proto, resp.Trailer)
				}
			}
			call()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				call()
			}
		})
	}
}

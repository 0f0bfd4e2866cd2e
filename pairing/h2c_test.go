package pairing

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestEnableH2C: a server with EnableH2C answers HTTP/2 with prior
// knowledge and HTTP/1.1 on the same plain listener, behind the middleware.
func TestEnableH2C(t *testing.T) {
	cfg := Config{Port: "1", ApplPath: "/", Token: "tok"}
	srv := &http.Server{Handler: cfg.Middleware(Options{Stop: func() {}})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Proto)
	})), ReadHeaderTimeout: 5 * time.Second}
	EnableH2C(srv)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	h2c := &http.Transport{Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	defer h2c.CloseIdleConnections()
	h1 := &http.Transport{TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
	defer h1.CloseIdleConnections()
	for tr, want := range map[*http.Transport]string{h2c: "HTTP/2.0", h1: "HTTP/1.1"} {
		req, _ := http.NewRequest("GET", "http://"+l.Addr().String()+"/", nil)
		req.Header.Set("MS-ASPNETCORE-TOKEN", "tok")
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != want {
			t.Errorf("want %s: %d %q", want, resp.StatusCode, b)
		}
	}
}

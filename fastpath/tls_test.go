package fastpath

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// testCA issues certificates for the TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a leaf certificate (server if client is false) as PEM
// cert, PEM key and the tls.Certificate.
func (ca *testCA) issue(t testing.TB, cn string, serial int64, client bool) ([]byte, []byte, tls.Certificate) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM, pair
}

func TestTLSListener(t *testing.T) {
	dir := t.TempDir()
	serverCA := newTestCA(t, "server CA")
	clientCA := newTestCA(t, "client CA")
	certFile, keyFile, caFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "clientca.pem")
	writeCert := func(serial int64) {
		c, k, _ := serverCA.issue(t, "loopgate", serial, false)
		if err := os.WriteFile(certFile, c, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, k, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeCert(100)
	if err := os.WriteFile(caFile, clientCA.pem, 0o600); err != nil {
		t.Fatal(err)
	}

	addr, got := capturingBackend(t, okResponse)
	app := &fakeApp{vpath: "/"}
	app.spec.Store(testSpec("/"))
	srv, err := New(Config{TLSListen: []string{"127.0.0.1:0"}, TLSCertFile: certFile, TLSKeyFile: keyFile, TLSClientCAFile: caFile}, []App{app}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	t.Cleanup(func() {
		_ = srv.Shutdown(t.Context())
		if err := recv(t, served); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	up := newUpstream(addr, &srv.cfg)
	t.Cleanup(up.Close)
	app.setBackends(&fakeBackend{addr: addr, token: "tls-token", pid: 7, up: up})
	front := srv.Addrs()[0].String()

	roots := x509.NewCertPool()
	roots.AddCert(serverCA.cert)
	dialTLS := func(cfg *tls.Config) *rawConn {
		t.Helper()
		cfg.RootCAs = roots
		c, err := tls.Dial("tcp", front, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		return &rawConn{t: t, c: c, br: newReader(c)}
	}
	serial := func(c *rawConn) int64 {
		return c.c.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}

	// No client certificate: https, and no (forged) client cert header.
	c := dialTLS(&tls.Config{})
	if r, _ := c.roundTrip("GET / HTTP/1.1\r\nHost: a\r\nMS-ASPNETCORE-CLIENTCERT: forged\r\n\r\n"); r.StatusCode != 200 {
		t.Fatalf("status %d", r.StatusCode)
	}
	req := recv(t, got)
	if v := req.values("X-Forwarded-Proto"); len(v) != 1 || v[0] != "https" {
		t.Errorf("X-Forwarded-Proto %q", v)
	}
	if v := req.values("MS-ASPNETCORE-CLIENTCERT"); len(v) != 0 {
		t.Errorf("client cert header without a client certificate: %q", v)
	}

	// A verified client certificate is forwarded as base64 DER, one line.
	_, _, clientPair := clientCA.issue(t, "alice", 5, true)
	cc := dialTLS(&tls.Config{Certificates: []tls.Certificate{clientPair}})
	if r, _ := cc.roundTrip(get("a", "/")); r.StatusCode != 200 {
		t.Fatalf("status %d", r.StatusCode)
	}
	want := base64.StdEncoding.EncodeToString(clientPair.Certificate[0])
	if v := recv(t, got).values("MS-ASPNETCORE-CLIENTCERT"); len(v) != 1 || v[0] != want {
		t.Errorf("MS-ASPNETCORE-CLIENTCERT %q, want %q", v, want)
	}

	// A certificate from another CA is refused in the handshake.
	_, _, strayPair := serverCA.issue(t, "mallory", 6, true)
	stray := &tls.Config{RootCAs: roots, GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &strayPair, nil }}
	if sc, err := tls.Dial("tcp", front, stray); err == nil {
		_ = sc.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := sc.Write([]byte(get("a", "/"))); err == nil {
			if _, err := sc.Read(make([]byte, 1)); err == nil {
				t.Errorf("an unverifiable client certificate was accepted")
			}
		}
		sc.Close()
	}

	// Certificate reload: the open connection keeps working, new ones get
	// the new certificate.
	if serial(c) != 100 {
		t.Fatalf("serial %d", serial(c))
	}
	writeCert(200)
	if err := srv.ReloadCertificates(); err != nil {
		t.Fatal(err)
	}
	if r, _ := c.roundTrip(get("a", "/")); r.StatusCode != 200 {
		t.Errorf("request on the pre-reload connection: %d", r.StatusCode)
	}
	recv(t, got)
	if n := dialTLS(&tls.Config{}); serial(n) != 200 {
		t.Errorf("new connection got certificate %d, want 200", serial(n))
	}
	// A broken file keeps the old certificate.
	if err := os.WriteFile(certFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := srv.ReloadCertificates(); err == nil {
		t.Errorf("reloading a broken certificate succeeded")
	}
	if n := dialTLS(&tls.Config{}); serial(n) != 200 {
		t.Errorf("after a failed reload: certificate %d, want 200", serial(n))
	}
}

// TestTLSKeepAliveDeadlines: a TLS keep-alive connection gets fasthttp's
// idle and header deadlines though trackedConn holds them back (idleRead,
// armIdle): busy with a request every 30 ms for twice --idle-timeout it is
// never closed, though its waits keep an earlier wait's deadline; once idle
// it is closed after --idle-timeout, no more than idleSlack early; and a
// next request's head left unfinished gets 408 at --header-read-timeout,
// long before --idle-timeout.
func TestTLSKeepAliveDeadlines(t *testing.T) {
	dial := func(t *testing.T, h *tlsHarness) *rawConn {
		c, err := tls.Dial("tcp", h.addr, &tls.Config{RootCAs: h.roots})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return &rawConn{t: t, c: c, br: newReader(c)}
	}
	ok := func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) }

	t.Run("idle timeout", func(t *testing.T) {
		const idle = 1500 * time.Millisecond
		h := newTLSHarness(t, Config{IdleTimeout: idle, HeaderReadTimeout: time.Second, DisableHTTP2: true})
		h.backend(ok)
		c := dial(t, h)
		_ = c.c.SetDeadline(time.Now().Add(30 * time.Second))
		var last time.Time
		for end := time.Now().Add(2 * idle); time.Now().Before(end); {
			if r, _ := c.roundTrip(get("a", "/")); r.StatusCode != 200 {
				t.Fatalf("status %d", r.StatusCode)
			}
			last = time.Now()
			time.Sleep(30 * time.Millisecond)
		}
		if !c.closedByPeer(idle + 3*time.Second) {
			t.Fatalf("idle connection open %v after its last request, --idle-timeout %v", time.Since(last), idle)
		}
		if d := time.Since(last); d < idle-parkSlack {
			t.Errorf("closed %v after its last request, want at least %v", d, idle-parkSlack)
		}
	})

	t.Run("header timeout", func(t *testing.T) {
		const headerTimeout = time.Second
		h := newTLSHarness(t, Config{IdleTimeout: time.Minute, HeaderReadTimeout: headerTimeout, DisableHTTP2: true})
		h.backend(ok)
		c := dial(t, h)
		_ = c.c.SetDeadline(time.Now().Add(30 * time.Second))
		for range 3 {
			if r, _ := c.roundTrip(get("a", "/")); r.StatusCode != 200 {
				t.Fatalf("status %d", r.StatusCode)
			}
		}
		c.send("GET / HTTP/1.1\r\nHost: a\r\n") // never finished
		start := time.Now()
		_ = c.c.SetReadDeadline(time.Now().Add(headerTimeout + 5*time.Second))
		r, _ := c.response("GET")
		if took := time.Since(start); r.StatusCode != 408 || took < headerTimeout-200*time.Millisecond {
			t.Errorf("unfinished head: %d after %v, want 408 after about %v", r.StatusCode, took, headerTimeout)
		}
	})
}

package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/loopgatetest"
)

// writeCert writes a self-signed certificate for 127.0.0.1 with the given
// serial number.
func writeCert(t *testing.T, certFile, keyFile string, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "loopgate test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
}

// servedSerial connects over TLS and returns the serial of the certificate
// the server presents.
func servedSerial(t *testing.T, addr string) int64 {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// TestTLSCertificatesReloadOnSIGHUP: the HTTPS listener serves the
// certificate files, and SIGHUP makes new handshakes use the new ones.
func TestTLSCertificatesReloadOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeCert(t, certFile, keyFile, 1)
	in := loopgatetest.Start(t, loopgatetest.Options{Args: []string{"--tls-listen", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile, backendApp(t, "")}})
	tlsAddr := in.WaitLog(0, func(l loopgatetest.Line) bool { return l.Str("event") == "listening" && l["tls"] == true }).Str("addr")
	if tlsAddr == "" {
		t.Fatal("no TLS listening line in the startup log")
	}
	if got := servedSerial(t, tlsAddr); got != 1 {
		t.Fatalf("serial %d before reload, want 1", got)
	}
	writeCert(t, certFile, keyFile, 2)
	in.Signal(syscall.SIGHUP)
	if in.WaitLog(5*time.Second, func(l loopgatetest.Line) bool { return l.Str("event") == "reload_done" }) == nil {
		t.Fatal("no reload_done after SIGHUP")
	}
	if got := servedSerial(t, tlsAddr); got != 2 {
		t.Errorf("serial %d after SIGHUP, want 2", got)
	}
	if s := in.Status(t); len(s.Listeners) != 2 || !s.Listeners[1].TLS || s.Listeners[1].Addr != tlsAddr {
		t.Errorf("/status listeners %+v", s.Listeners)
	}
}

package main

import (
	"crypto/tls"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/loopgatetest"
)

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
	loopgatetest.WriteCert(t, certFile, keyFile, 1)
	in := loopgatetest.Start(t, loopgatetest.Options{Args: []string{"--tls-listen", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile, backendApp(t, "")}})
	tlsAddr := in.WaitLog(0, func(l loopgatetest.Line) bool { return l.Str("event") == "listening" && l["tls"] == true }).Str("addr")
	if tlsAddr == "" {
		t.Fatal("no TLS listening line in the startup log")
	}
	if got := servedSerial(t, tlsAddr); got != 1 {
		t.Fatalf("serial %d before reload, want 1", got)
	}
	loopgatetest.WriteCert(t, certFile, keyFile, 2)
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

package main

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
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

// startTLSServe starts loopgate serving HTTPS with a certificate of serial
// number 1: the process, its TLS address and the certificate's files.
func startTLSServe(t *testing.T) (in *loopgatetest.Process, tlsAddr, certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	loopgatetest.WriteCert(t, certFile, keyFile, 1)
	in = loopgatetest.Start(t, loopgatetest.Options{Args: []string{"--tls-listen", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile, backendApp(t, "")}})
	tlsAddr = in.WaitLog(0, func(l loopgatetest.Line) bool { return l.Str("event") == "listening" && l["tls"] == true }).Str("addr")
	if tlsAddr == "" {
		t.Fatal("no TLS listening line in the startup log")
	}
	return in, tlsAddr, certFile, keyFile
}

// TestTLSCertificatesReloadOnSIGHUP: the HTTPS listener serves the
// certificate files, and SIGHUP makes new handshakes use the new ones.
func TestTLSCertificatesReloadOnSIGHUP(t *testing.T) {
	in, tlsAddr, certFile, keyFile := startTLSServe(t)
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

// ticketCache is a client session cache that also records whether any
// ticket the server sent allowed 0-RTT early data.
type ticketCache struct {
	tls.ClientSessionCache
	earlyData bool
	tickets   int
}

func (c *ticketCache) Put(key string, cs *tls.ClientSessionState) {
	if cs != nil {
		if _, st, err := cs.ResumptionState(); err == nil && st != nil {
			c.tickets++
			c.earlyData = c.earlyData || st.EarlyData
		}
	}
	c.ClientSessionCache.Put(key, cs)
}

// getOverTLS makes one HTTP/1.1 request over a new TLS connection with
// cfg and returns the connection's state and the certificate serial the
// server presented. The answer is read whole: a TLS 1.3 ticket arrives
// after the handshake, with the first bytes the server sends.
func getOverTLS(t *testing.T, addr string, cfg *tls.Config) (tls.ConnectionState, int64) {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")); err != nil {
		t.Fatalf("writing the request: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("answer %s, want 200", resp.Status)
	}
	st := conn.ConnectionState()
	return st, st.PeerCertificates[0].SerialNumber.Int64()
}

// TestTLSSessionResumption: a client that kept the session ticket of its
// first connection resumes on the next one (no certificate exchange, no
// signature), over TLS 1.3 and TLS 1.2, and still after SIGHUP reloaded
// the certificate (one tls.Config, so one set of ticket keys, lives for
// the process); the reloaded certificate goes to clients without a
// ticket. No ticket allows 0-RTT early data.
func TestTLSSessionResumption(t *testing.T) {
	in, tlsAddr, certFile, keyFile := startTLSServe(t)
	versions := map[string]uint16{"TLS 1.3": tls.VersionTLS13, "TLS 1.2": tls.VersionTLS12}
	caches := map[string]*ticketCache{}
	config := func(v string) *tls.Config {
		if caches[v] == nil {
			caches[v] = &ticketCache{ClientSessionCache: tls.NewLRUClientSessionCache(8)}
		}
		return &tls.Config{InsecureSkipVerify: true, MinVersion: versions[v], MaxVersion: versions[v],
			NextProtos: []string{"http/1.1"}, ClientSessionCache: caches[v]}
	}
	for v := range versions {
		if st, _ := getOverTLS(t, tlsAddr, config(v)); st.DidResume {
			t.Fatalf("%s: the first connection resumed a session", v)
		}
		if caches[v].tickets == 0 {
			t.Fatalf("%s: no session ticket from loopgate", v)
		}
		if st, _ := getOverTLS(t, tlsAddr, config(v)); !st.DidResume {
			t.Errorf("%s: the second connection, with the first one's ticket, did not resume", v)
		}
	}

	loopgatetest.WriteCert(t, certFile, keyFile, 2)
	in.Signal(syscall.SIGHUP)
	if in.WaitLog(5*time.Second, func(l loopgatetest.Line) bool { return l.Str("event") == "reload_done" }) == nil {
		t.Fatal("no reload_done after SIGHUP")
	}
	for v := range versions {
		if st, _ := getOverTLS(t, tlsAddr, config(v)); !st.DidResume {
			t.Errorf("%s: a ticket from before the certificate reload did not resume after it", v)
		}
		fresh := config(v)
		fresh.ClientSessionCache = nil
		if st, serial := getOverTLS(t, tlsAddr, fresh); st.DidResume || serial != 2 {
			t.Errorf("%s: a client without a ticket: resumed %v, certificate serial %d (want a full handshake with serial 2)", v, st.DidResume, serial)
		}
		if caches[v].earlyData {
			t.Errorf("%s: a session ticket allows 0-RTT early data", v)
		}
	}
}

package reliability

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/loopgate/loopgate/bpf/bpftest"
	"github.com/loopgate/loopgate/internal/loopgatetest"
)

// TestAccelBulkSlowClient: through --accel on, a 64 MiB download (GET
// /big) and a 64 MiB upload echoed back (POST /echo) reach a client that
// reads in small bursts with pauses intact (SHA-256 of every byte). The
// download's backend connection was released from the sockmap (issue 19:
// loopgate falls more than 4 MiB behind, and the rest of the body takes
// plain TCP instead of the sockmap's costlier TCP path; /status
// acceleration.released counts it); the upload went over a connection
// kept out of the sockmap (no message redirected or passed meanwhile).
func TestAccelBulkSlowClient(t *testing.T) {
	bpftest.Require(t)
	const size = 64 << 20
	l := startAccelOn(t, 2*size)

	// testbackend's /big: byte(i) in each MiB.
	mib := make([]byte, 1<<20)
	for i := range mib {
		mib[i] = byte(i)
	}
	want := sha256.New()
	for range size >> 20 {
		want.Write(mib)
	}
	released := l.Status(t).Acceleration.Released
	conn := dialRaw(t, l.Front, 2*time.Minute)
	if _, err := fmt.Fprintf(conn, "GET /big?mb=%d HTTP/1.1\r\nHost: bulk\r\n\r\n", size>>20); err != nil {
		t.Fatal(err)
	}
	if got := slowBody(t, conn, size); got != fmt.Sprintf("%x", want.Sum(nil)) {
		t.Fatalf("64 MiB download: SHA-256 %s, want %x", got, want.Sum(nil))
	}
	if now := l.Status(t).Acceleration.Released; now <= released {
		t.Errorf("64 MiB download to a slow client: acceleration.released %d before, %d after; want it released to plain TCP", released, now)
	}

	up := make([]byte, size)
	rng := rand.New(rand.NewPCG(19, 64))
	for i := 0; i < len(up); i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			up[i+j] = byte(v >> (8 * j))
		}
	}
	acc := l.Status(t).Acceleration
	conn = dialRaw(t, l.Front, 2*time.Minute)
	werr := make(chan error, 1)
	go func() {
		_, err := fmt.Fprintf(conn, "POST /echo HTTP/1.1\r\nHost: bulk\r\nContent-Length: %d\r\n\r\n", size)
		if err == nil {
			_, err = conn.Write(up)
		}
		werr <- err
	}()
	sum := sha256.Sum256(up)
	if got := slowBody(t, conn, size); got != fmt.Sprintf("%x", sum) {
		t.Fatalf("64 MiB upload echoed: SHA-256 %s, want %x", got, sum)
	}
	if err := <-werr; err != nil {
		t.Fatalf("sending the upload: %v", err)
	}
	if now := l.Status(t).Acceleration; now.Redirected != acc.Redirected || now.Passed != acc.Passed {
		t.Errorf("64 MiB upload: sockmap messages redirected %d, passed %d before; %d, %d after: want the upload's connection kept out of the sockmap", acc.Redirected, acc.Passed, now.Redirected, now.Passed)
	}
}

// startAccelOn starts loopgate with --accel on in front of testbackend,
// with maxAllowedContentLength maxBody, and has the backend started.
func startAccelOn(t *testing.T, maxBody int) *loopgatetest.Process {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <system.webServer>
    <security><requestFiltering><requestLimits maxAllowedContentLength="%d" /></requestFiltering></security>
    <aspNetCore processPath=%q shutdownTimeLimit="2" startupTimeLimit="10" processesPerApplication="1" />
  </system.webServer>
</configuration>
`, maxBody, loopgatetest.Program(t, backendPkg))
	if err := os.WriteFile(filepath.Join(dir, "web.config"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	l := startLoopgate(t, loopgatetest.Options{Args: []string{"--access-log=false", "--accel", "on", dir}})
	if code, body, err := get(client(t, 10*time.Second), l.URL("/")); err != nil || code != 200 {
		t.Fatalf("first GET / (starts the backend): %d %q %v", code, body, err)
	}
	loopgatetest.KillAtCleanup(t, l.WaitReady(t, 1, 5*time.Second)...)
	return l
}

// TestAccelChunkedUploadThenSmall: through --accel on, a 16 MiB chunked
// upload to a backend that reads it only after 300 ms leaves loopgate's end
// of that backend connection on the sockmap's TCP fallback (its length was
// not known up front, so it took a redirected connection). The answer is
// intact, and the small GET that follows on the same client connection is
// redirected, not sent over that fallback: the connection was closed after
// the upload instead of pooled.
func TestAccelChunkedUploadThenSmall(t *testing.T) {
	bpftest.Require(t)
	const size = 16 << 20
	l := startAccelOn(t, 2*size)
	body := make([]byte, size)
	var sum uint32
	for i := range body {
		body[i] = byte(i * 7)
		sum += uint32(body[i])
	}
	conn := dialRaw(t, l.Front, time.Minute)
	br := bufio.NewReader(conn)
	roundTrip := func(req string, body []byte) string {
		t.Helper()
		werr := make(chan error, 1)
		go func() {
			_, err := io.WriteString(conn, req)
			for b := body; err == nil && len(b) > 0; b = b[min(len(b), 256<<10):] {
				_, err = fmt.Fprintf(conn, "%x\r\n%s\r\n", min(len(b), 256<<10), b[:min(len(b), 256<<10)])
			}
			if err == nil && body != nil {
				_, err = io.WriteString(conn, "0\r\n\r\n")
			}
			werr <- err
		}()
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%q: reading the answer: %v", req, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%q: %s %q %v", req, resp.Status, got, err)
		}
		if err := <-werr; err != nil {
			t.Fatalf("%q: sending: %v", req, err)
		}
		return string(got)
	}
	before := l.Status(t).Acceleration
	got := roundTrip("POST /upload?ms=300 HTTP/1.1\r\nHost: bulk\r\nTransfer-Encoding: chunked\r\n\r\n", body)
	if want := fmt.Sprintf("n=%d sum=%d", size, sum); got != want {
		t.Fatalf("16 MiB chunked upload: backend answered %q, want %q", got, want)
	}
	after := l.Status(t).Acceleration
	if after.Fallbacks <= before.Fallbacks {
		t.Fatalf("16 MiB chunked upload to a backend that waits 300 ms: sockmap fallbacks %d before, %d after; want the upload's connection sent back to TCP (the case under test did not happen)", before.Fallbacks, after.Fallbacks)
	}
	if got := roundTrip("GET /pid HTTP/1.1\r\nHost: bulk\r\n\r\n", nil); got == "" {
		t.Fatal("GET /pid after the upload: empty answer")
	}
	if now := l.Status(t).Acceleration; now.Passed != after.Passed || now.Redirected <= after.Redirected {
		t.Errorf("GET after a chunked upload that fell back: sockmap messages passed %d, redirected %d before it; %d, %d after: want it redirected, not over the fallback (the upload's connection pooled again)", after.Passed, after.Redirected, now.Passed, now.Redirected)
	}
}

// slowBody reads a 200 response of size bytes from conn in 128 KiB bursts
// with a 5 ms pause after each, and returns the SHA-256 of its body in hex.
func slowBody(t *testing.T, conn io.Reader, size int64) string {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 64<<10), nil)
	if err != nil {
		t.Fatalf("reading the response head: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != size {
		t.Fatalf("status %d, Content-Length %d; want 200, %d", resp.StatusCode, resp.ContentLength, size)
	}
	h := sha256.New()
	buf := make([]byte, 128<<10)
	var n int64
	start := time.Now()
	for n < size {
		k, err := io.ReadFull(resp.Body, buf[:min(int64(len(buf)), size-n)])
		h.Write(buf[:k])
		n += int64(k)
		if err != nil {
			t.Fatalf("reading the body at %d of %d bytes: %v", n, size, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("read %d MiB in bursts in %v", size>>20, time.Since(start).Round(time.Millisecond))
	return fmt.Sprintf("%x", h.Sum(nil))
}

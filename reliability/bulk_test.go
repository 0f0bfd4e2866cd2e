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
	dir := t.TempDir()
	cfg := fmt.Sprintf(`<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <system.webServer>
    <security><requestFiltering><requestLimits maxAllowedContentLength="%d" /></requestFiltering></security>
    <aspNetCore processPath=%q shutdownTimeLimit="2" startupTimeLimit="10" processesPerApplication="1" />
  </system.webServer>
</configuration>
`, 2*size, loopgatetest.Program(t, backendPkg))
	if err := os.WriteFile(filepath.Join(dir, "web.config"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	l := startLoopgate(t, loopgatetest.Options{Args: []string{"--access-log=false", "--accel", "on", dir}})
	if code, body, err := get(client(t, 10*time.Second), l.URL("/")); err != nil || code != 200 {
		t.Fatalf("first GET / (starts the backend): %d %q %v", code, body, err)
	}
	loopgatetest.KillAtCleanup(t, l.WaitReady(t, 1, 5*time.Second)...)

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

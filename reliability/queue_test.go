package reliability

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/loopgatetest"
)

// settingsApp writes a web.config that runs the test backend with the
// given aspNetCore attributes and handler settings, and returns the
// directory.
func settingsApp(t *testing.T, attrs string, settings map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	writeSettingsConfig(t, dir, attrs, settings)
	return dir
}

func writeSettingsConfig(t *testing.T, dir, attrs string, settings map[string]string) {
	t.Helper()
	names := make([]string, 0, len(settings))
	for k := range settings {
		names = append(names, k)
	}
	sort.Strings(names)
	var hs strings.Builder
	for _, k := range names {
		fmt.Fprintf(&hs, "        <handlerSetting name=%q value=%q />\n", k, settings[k])
	}
	cfg := fmt.Sprintf(`<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <system.webServer>
    <aspNetCore processPath=%q shutdownTimeLimit="2" startupTimeLimit="10" %s>
      <handlerSettings>
%s      </handlerSettings>
    </aspNetCore>
  </system.webServer>
</configuration>
`, loopgatetest.Program(t, backendPkg), attrs, hs.String())
	if err := os.WriteFile(filepath.Join(dir, "web.config"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestQueueLength: with --backend-max-conns 1 and queueLength 10, one
// request holds the backend's connection, ten wait for it, and the next
// gets 503 with Retry-After at once; the ten are served.
func TestQueueLength(t *testing.T) {
	dir := settingsApp(t, "", map[string]string{"queueLength": "10"})
	l := startLoopgate(t, loopgatetest.Options{Args: []string{"--backend-max-conns", "1", "--backend-queue-timeout", "30s", dir}})
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxConnsPerHost: 0, DisableKeepAlives: true}}
	if code, _, err := get(c, l.URL("/")); err != nil || code != 200 {
		t.Fatalf("first request: %d %v", code, err)
	}
	codes := make(chan int, 11)
	var wg sync.WaitGroup
	send := func(path string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _, err := get(c, l.URL(path))
			if err != nil {
				t.Errorf("a waiting request: %v", err)
			}
			codes <- code
		}()
	}
	// One holds the connection for 8 s; ten wait for it.
	send("/sleep?ms=8000")
	waitMetric(t, l, `loopgate_upstream_connections{app="/",state="busy"}`, 1)
	for range 10 {
		send("/sleep?ms=1")
	}
	waitMetric(t, l, `loopgate_app_requests_queued{app="/"}`, 10)
	began := time.Now()
	resp, err := c.Get(l.URL("/"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(began)
	t.Logf("the 13th request: %d after %v", resp.StatusCode, took)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || !strings.Contains(string(body), "HTTP Error 503. The service is unavailable.") || took > 3*time.Second {
		t.Errorf("past queueLength: %d, Retry-After %q, after %v: %q", resp.StatusCode, resp.Header.Get("Retry-After"), took, body)
	}
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != 200 {
			t.Errorf("a waiting request got %d", code)
		}
	}
}

// waitMetric waits up to 10 s for series to reach at least want.
func waitMetric(t *testing.T, l *loopgatetest.Process, series string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for metric(t, l, series) < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s below %v after 10 s", series, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loopgate/loopgate/pairing"
)

const token = "0f8fad5b-d9cb-469f-a165-70867728950e"

// serve runs the app as loopgate would host it at /app, behind the
// middleware, on a real server (streaming needs one).
func serve(t *testing.T) *httptest.Server {
	t.Helper()
	cfg := pairing.Config{Port: "1", ApplPath: "/app", Token: token}
	a := &app{start: time.Now(), cfg: cfg, hosted: true}
	s := httptest.NewServer(cfg.Middleware(pairing.Options{Stop: func() {}})(a.routes()))
	t.Cleanup(s.Close)
	return s
}

func get(t *testing.T, s *httptest.Server, method, path string, body io.Reader, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("MS-ASPNETCORE-TOKEN", token)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestPageShowsTheRequestAsForwarded(t *testing.T) {
	s := serve(t)
	resp, body := get(t, s, "GET", "/App/some/where", nil, "X-Forwarded-For", "203.0.113.7:5555", "X-Forwarded-Proto", "https")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("status %d, type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{"203.0.113.7:5555", "https", "<td>/App</td>", "<td>/some/where</td>", "<td>" + strconv.Itoa(os.Getpid()) + "</td>", "Hosted behind loopgate"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}

	_, body = get(t, s, "GET", "/app/info", nil, "X-Forwarded-For", "203.0.113.7:5555")
	var v view
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("/info: %v: %s", err, body)
	}
	if v.PID != os.Getpid() || !v.Hosted || v.Remote != "203.0.113.7:5555" || v.PathBase != "/app" || v.Path != "/info" || !strings.HasPrefix(v.XOriginalFor, "127.0.0.1:") {
		t.Errorf("/info = %+v", v)
	}
}

func TestEndpoints(t *testing.T) {
	s := serve(t)
	if resp, body := get(t, s, "GET", "/app/healthz", nil); resp.StatusCode != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", resp.StatusCode, body)
	}
	if resp, body := get(t, s, "GET", "/app/slow?ms=5", nil); resp.StatusCode != 200 || body != "slept 5 ms\n" {
		t.Errorf("/slow: %d %q", resp.StatusCode, body)
	}
	if resp, body := get(t, s, "GET", "/app/slow?ms=-1", nil); resp.StatusCode != 400 || !strings.Contains(body, `ms="-1"`) {
		t.Errorf("/slow?ms=-1: %d %q", resp.StatusCode, body)
	}
	resp, body := get(t, s, "GET", "/app/stream?chunks=3&ms=1", nil)
	if resp.StatusCode != 200 || body != "chunk 1\nchunk 2\nchunk 3\n" || len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("/stream: %d %q %v", resp.StatusCode, body, resp.TransferEncoding)
	}
	payload := strings.Repeat("héllo ", 1000)
	resp, body = get(t, s, "POST", "/app/echo", strings.NewReader(payload), "Content-Type", "text/plain")
	if resp.StatusCode != 200 || body != payload || resp.Header.Get("X-Echo-Length") != strconv.Itoa(len(payload)) || resp.Header.Get("Content-Type") != "text/plain" {
		t.Errorf("/echo: %d, %d bytes back, X-Echo-Length %q", resp.StatusCode, len(body), resp.Header.Get("X-Echo-Length"))
	}
	_, body = get(t, s, "GET", "/app/headers", nil, "X-Test", "yes")
	var h map[string][]string
	if err := json.Unmarshal([]byte(body), &h); err != nil || h["X-Test"][0] != "yes" || len(h["Host"]) != 1 {
		t.Errorf("/headers: %v %s", err, body)
	}
	if _, ok := h["Ms-Aspnetcore-Token"]; ok {
		t.Error("/headers shows the pairing token")
	}
	if resp, _ := get(t, s, "GET", "/app/", nil, "MS-ASPNETCORE-TOKEN", "wrong"); resp.StatusCode != 400 {
		t.Errorf("wrong token: %d, want 400", resp.StatusCode)
	}
}

package reliability

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/loopgatetest"
)

// TestSpoofedPairingHeaders: whatever MS-ASPNETCORE-* headers a client
// sends, the app sees exactly loopgate's token once and none of the rest;
// a spoofed shutdown request does not stop the app; a direct connection to
// the backend's port without the token is refused by the pairing
// middleware; and the token never shows in /status, /metrics or the log.
func TestSpoofedPairingHeaders(t *testing.T) {
	dir := appDir(t, "", nil)
	l := startLoopgate(t, loopgatetest.Options{Args: []string{dir}})
	c := client(t, 10*time.Second)

	req, _ := http.NewRequest("GET", l.URL("/headers"), nil)
	req.Header["MS-ASPNETCORE-TOKEN"] = []string{"forged"}
	req.Header["ms-aspnetcore-token"] = []string{"forged-too"}
	req.Header["MS-ASPNETCORE-EVENT"] = []string{"shutdown"}
	req.Header["MS-ASPNETCORE-CLIENTCERT"] = []string{"MIIBszCCAVmgAwIBAgIUforged"}
	req.Header["Ms-AspNetCore-Anything"] = []string{"x"}
	req.Header["X-Forwarded-For"] = []string{"10.9.8.7"}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var view struct {
		Raw        http.Header `json:"raw"`
		App        http.Header `json:"app"`
		TokenLines int         `json:"token_lines"`
		TokenOK    bool        `json:"token_ok"`
		Remote     string      `json:"remote"`
	}
	err = json.NewDecoder(resp.Body).Decode(&view)
	resp.Body.Close()
	if resp.StatusCode != 200 || err != nil {
		t.Fatalf("/headers through loopgate: %d %v", resp.StatusCode, err)
	}
	if view.TokenLines != 1 || !view.TokenOK {
		t.Errorf("the app got %d MS-ASPNETCORE-TOKEN lines (token matches: %v), want exactly loopgate's", view.TokenLines, view.TokenOK)
	}
	for name, v := range view.Raw {
		if strings.HasPrefix(strings.ToLower(name), "ms-aspnetcore") {
			t.Errorf("client header %s: %q reached the app", name, v)
		}
	}
	// The app sees the real peer, not the address the client claimed.
	if !strings.HasPrefix(view.Remote, "127.0.0.1:") || view.App.Get("X-Original-For") == "" {
		t.Errorf("app's client address %q (X-Forwarded-For was %q): want loopgate's peer, 127.0.0.1", view.Remote, view.Raw.Get("X-Forwarded-For"))
	}
	pid := l.WaitReady(t, 1, 5*time.Second)[0]
	loopgatetest.KillAtCleanup(t, pid)

	// A spoofed shutdown request through loopgate: the event header is
	// dropped, so the middleware never sees a shutdown.
	sreq, _ := http.NewRequest("POST", l.URL("/iisintegration"), nil)
	sreq.Header["MS-ASPNETCORE-EVENT"] = []string{"shutdown"}
	sreq.Header["MS-ASPNETCORE-TOKEN"] = []string{"forged"}
	if resp, err := c.Do(sreq); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusAccepted {
			t.Errorf("spoofed shutdown through loopgate answered 202")
		}
	}
	time.Sleep(300 * time.Millisecond)
	if !loopgatetest.Alive(pid) || l.ReadyPIDs(t)[0] != pid {
		t.Fatalf("the app stopped after a spoofed shutdown request")
	}

	// Straight to the backend's port, around loopgate.
	port := l.Status(t).Apps[0].Processes[0].Port
	direct := fmt.Sprintf("http://127.0.0.1:%d", port)
	dc := &http.Client{Timeout: 5 * time.Second}
	for _, tc := range []struct {
		name, method, path, token string
		event                     bool
	}{
		{"no token", "GET", "/", "", false},
		{"forged token", "GET", "/", "forged", false},
		{"shutdown without the token", "POST", "/iisintegration", "", true},
		{"shutdown with a forged token", "POST", "/iisintegration", "forged", true},
	} {
		r, _ := http.NewRequest(tc.method, direct+tc.path, nil)
		if tc.token != "" {
			r.Header["MS-ASPNETCORE-TOKEN"] = []string{tc.token}
		}
		if tc.event {
			r.Header["MS-ASPNETCORE-EVENT"] = []string{"shutdown"}
		}
		resp, err := dc.Do(r)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("direct request, %s: %d, want 400 from the pairing middleware", tc.name, resp.StatusCode)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if !loopgatetest.Alive(pid) {
		t.Fatalf("the app stopped after direct shutdown requests without the token")
	}

	// The real token (read from the backend's environment, as root may)
	// appears nowhere an operator or a scraper can read.
	token := envOf(t, pid, "ASPNETCORE_TOKEN")
	if len(token) < 16 {
		t.Fatalf("backend token %q: too short", token)
	}
	for _, path := range []string{"/status", "/metrics"} {
		_, body, err := get(dc, "http://"+l.Admin+path)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(body, token) {
			t.Errorf("%s shows the pairing token", path)
		}
	}
	for _, line := range l.Raw() {
		if strings.Contains(line, token) {
			t.Errorf("log line shows the pairing token: %s", line)
		}
	}
}

// envOf reads one variable from a process's initial environment.
func envOf(t *testing.T, pid int, name string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range strings.Split(string(b), "\x00") {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	t.Fatalf("process %d has no %s", pid, name)
	return ""
}

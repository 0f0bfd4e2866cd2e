package fastpath

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/loopgate/loopgate/configload"
	"github.com/loopgate/loopgate/internal/gobuild"
	"github.com/loopgate/loopgate/supervisor"
)

// helloBinary is examples/hello, built once by TestMain for the tests that
// run through the real supervisor.
var helloBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fastpath-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	helloBinary = filepath.Join(dir, "hello")
	if err := gobuild.Build(helloBinary, "github.com/loopgate/loopgate/examples/hello"); err != nil {
		fmt.Fprintf(os.Stderr, "building examples/hello: %v\n", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestThroughSupervisor forwards to examples/hello started by the real
// supervisor from its real web.config, mounted at /hello.
func TestThroughSupervisor(t *testing.T) {
	dir := t.TempDir()
	wc, err := os.ReadFile("../examples/hello/web.config")
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(helloBinary)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "web.config"), wc, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "hello"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	spec, err := configload.Load(dir, configload.Options{VirtualPath: "/hello", Environ: os.Environ()})
	if err != nil {
		t.Fatal(err)
	}

	var srv *Server
	sup, err := supervisor.New([]*configload.AppSpec{spec}, supervisor.Options{
		Environ:     os.Environ(),
		NewUpstream: func(p *supervisor.Process) supervisor.Upstream { return srv.NewUpstream(p) },
	})
	if err != nil {
		t.Fatal(err)
	}
	var apps []App
	for _, a := range sup.Apps() {
		apps = append(apps, FromSupervisor(a))
	}
	rec := &recorder{}
	srv, err = New(Config{Observer: rec}, apps, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeListener(ln, false) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("front shutdown: %v", err)
		}
		if err := sup.Shutdown(ctx); err != nil {
			t.Errorf("supervisor shutdown: %v", err)
		}
		recv(t, served)
	})

	c := dialRaw(t, ln.Addr().String())
	// The first request starts the app; the token the client forges is
	// replaced, so the pairing check in the app passes.
	r, body := c.roundTrip("GET /hello/info HTTP/1.1\r\nHost: edge.example\r\nMS-ASPNETCORE-TOKEN: forged\r\n\r\n")
	if r.StatusCode != 200 {
		t.Fatalf("GET /hello/info: %d %s", r.StatusCode, body)
	}
	var info struct {
		PID      int    `json:"pid"`
		Hosted   bool   `json:"hosted"`
		ApplPath string `json:"appl_path"`
		Remote   string `json:"remote"`
		Scheme   string `json:"scheme"`
		PathBase string `json:"path_base"`
		Host     string `json:"host"`
	}
	if err := json.Unmarshal(body, &info); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if !info.Hosted || info.ApplPath != "/hello" || info.PathBase != "/hello" || info.Scheme != "http" ||
		info.Remote != c.c.LocalAddr().String() || info.Host != "edge.example" {
		t.Errorf("the app saw %+v", info)
	}
	if i := rec.wait(t, 1); i.PID != info.PID || i.App != "/hello" || i.Status != 200 {
		t.Errorf("observer %+v, app pid %d", i, info.PID)
	}

	// A 1 MiB body goes through both ways.
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	r, body = c.roundTrip(fmt.Sprintf("POST /hello/echo HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-test\r\nContent-Length: %d\r\n\r\n%s", len(payload), payload))
	if r.StatusCode != 200 || !bytes.Equal(body, payload) || r.Header.Get("Content-Type") != "application/x-test" {
		t.Errorf("echo: %d, %d bytes back, type %q", r.StatusCode, len(body), r.Header.Get("Content-Type"))
	}

	// A streamed response arrives whole.
	c.send("GET /hello/stream?chunks=3&ms=20 HTTP/1.1\r\nHost: a\r\n\r\n")
	r, body = c.response("GET")
	if r.StatusCode != 200 || strings.Count(string(body), "chunk") != 3 {
		t.Errorf("stream: %d %q", r.StatusCode, body)
	}
	if st := sup.Status()[0]; len(st.Processes) != 1 || st.Processes[0].PID != info.PID {
		t.Errorf("supervisor status %+v", st)
	}
}

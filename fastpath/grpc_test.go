package fastpath

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/loopgate/loopgate/configload"
	"github.com/loopgate/loopgate/internal/gobuild"
	"github.com/loopgate/loopgate/internal/loopgatetest"
	"github.com/loopgate/loopgate/supervisor"
)

// grpcBinary builds examples/grpc once, beside examples/hello (TestMain
// removes both).
var grpcBinary = sync.OnceValues(func() (string, error) {
	out := filepath.Join(filepath.Dir(helloBinary), "grpc")
	return out, gobuild.Build(out, "github.com/loopgate/loopgate/examples/grpc")
})

// grpcSite is examples/grpc hosted from its own web.config by the real
// supervisor behind a front server with a TLS listener (HTTP/2 by ALPN).
type grpcSite struct {
	sup   *supervisor.Supervisor
	srv   *Server
	addr  string // the TLS listener
	roots *x509.CertPool
	rec   *recorder
	dir   string // the app's directory
}

func startGRPCSite(t *testing.T, edit func(*configload.AppSpec)) *grpcSite {
	t.Helper()
	bin, err := grpcBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	wc, err := os.ReadFile("../examples/grpc/web.config")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "web.config"), wc, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "grpc"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	spec, err := configload.Load(dir, configload.Options{VirtualPath: "/", Environ: os.Environ()})
	if err != nil {
		t.Fatal(err)
	}
	if spec.BackendProtocol != configload.BackendH2C {
		t.Fatalf("examples/grpc/web.config: backendProtocol %v", spec.BackendProtocol)
	}
	if edit != nil {
		edit(spec)
	}
	site := &grpcSite{rec: &recorder{}, dir: dir}
	site.sup, err = supervisor.New([]*configload.AppSpec{spec}, supervisor.Options{
		Environ:     os.Environ(),
		NewUpstream: func(p *supervisor.Process) supervisor.Upstream { return site.srv.NewUpstream(p) },
	})
	if err != nil {
		t.Fatal(err)
	}
	var apps []App
	for _, a := range site.sup.Apps() {
		apps = append(apps, FromSupervisor(a))
	}
	ca := newTestCA(t, "grpc CA")
	c, k, _ := ca.issue(t, "loopgate", 2, false)
	cfg := Config{Observer: site.rec, TLSListen: []string{"127.0.0.1:0"}, Listen: []string{"127.0.0.1:0"},
		TLSCertFile: filepath.Join(dir, "cert.pem"), TLSKeyFile: filepath.Join(dir, "key.pem")}
	if err := os.WriteFile(cfg.TLSCertFile, c, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.TLSKeyFile, k, 0o600); err != nil {
		t.Fatal(err)
	}
	site.srv, err = New(cfg, apps, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel))
	if err != nil {
		t.Fatal(err)
	}
	if err := site.srv.Listen(); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- site.srv.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := site.srv.Shutdown(ctx); err != nil {
			t.Errorf("front shutdown: %v", err)
		}
		if err := site.sup.Shutdown(ctx); err != nil {
			t.Errorf("supervisor shutdown: %v", err)
		}
		recv(t, served)
	})
	site.addr = site.srv.Addrs()[1].String()
	site.roots = x509.NewCertPool()
	site.roots.AddCert(ca.cert)
	return site
}

// plainAddr is the site's plain HTTP/1.1 listener.
func (s *grpcSite) plainAddr() string { return s.srv.Addrs()[0].String() }

// client is a grpc-go client through the TLS listener.
func (s *grpcSite) client(t *testing.T) testpb.TestServiceClient {
	t.Helper()
	cc, err := grpc.NewClient(s.addr,
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: s.roots})),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20), grpc.MaxCallSendMsgSize(16<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testpb.NewTestServiceClient(cc)
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestGRPCThroughLoopgate: grpc-go on both ends, the app started by the
// supervisor from examples/grpc/web.config (backendProtocol="h2c"), the
// client on loopgate's TLS listener.
func TestGRPCThroughLoopgate(t *testing.T) {
	site := startGRPCSite(t, nil)
	tc := site.client(t)

	t.Run("unary and the hosting rules", func(t *testing.T) {
		var hdr metadata.MD
		ctx := metadata.AppendToOutgoingContext(callCtx(t), "ms-aspnetcore-token", "forged")
		if _, err := tc.EmptyCall(ctx, &testpb.Empty{}, grpc.Header(&hdr)); err != nil {
			t.Fatal(err)
		}
		// The forged token was dropped, loopgate's passed the middleware
		// (which removes it), and X-Forwarded-For made the peer the client.
		if got := hdr.Get("app-token"); len(got) != 1 || got[0] != "absent" {
			t.Errorf("app-token %v", got)
		}
		if got := hdr.Get("app-peer"); len(got) != 1 || !strings.HasPrefix(got[0], "127.0.0.1:") {
			t.Errorf("app-peer %v", got)
		}
		if i := site.rec.wait(t, 1); i.Status != 200 || i.PID == 0 || i.App != "/" {
			t.Errorf("observer %+v", i)
		}
		hc := healthpb.NewHealthClient(grpcConnOf(t, site))
		r, err := hc.Check(callCtx(t), &healthpb.HealthCheckRequest{})
		if err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health: %v %v", r, err)
		}
	})

	t.Run("4 MiB both ways", func(t *testing.T) {
		body := bytes.Repeat([]byte("gRPC"), 1<<20)
		r, err := tc.UnaryCall(callCtx(t), &testpb.SimpleRequest{ResponseSize: 4 << 20, Payload: &testpb.Payload{Body: body}})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Payload.Body) != 4<<20 || r.OauthScope != strconv.Itoa(4<<20) {
			t.Errorf("got %d bytes back; the app got %s", len(r.Payload.Body), r.OauthScope)
		}
	})

	t.Run("server streaming", func(t *testing.T) {
		req := &testpb.StreamingOutputCallRequest{}
		for i := 1; i <= 8; i++ {
			req.ResponseParameters = append(req.ResponseParameters, &testpb.ResponseParameters{Size: int32(i * 1000)})
		}
		st, err := tc.StreamingOutputCall(callCtx(t), req)
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; ; i++ {
			m, err := st.Recv()
			if err == io.EOF {
				if i != 9 {
					t.Errorf("%d messages", i-1)
				}
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Payload.Body) != i*1000 {
				t.Errorf("message %d: %d bytes", i, len(m.Payload.Body))
			}
		}
	})

	t.Run("client streaming", func(t *testing.T) {
		st, err := tc.StreamingInputCall(callCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		for range 10 {
			if err := st.Send(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: make([]byte, 64<<10)}}); err != nil {
				t.Fatal(err)
			}
		}
		r, err := st.CloseAndRecv()
		if err != nil || r.AggregatedPayloadSize != 640<<10 {
			t.Fatalf("%v %v", r, err)
		}
	})

	t.Run("bidirectional, one message at a time", func(t *testing.T) {
		// Each answer is awaited before the next request is sent: any
		// buffering on the way, in either direction, would hang here
		// until the call's deadline.
		st, err := tc.FullDuplexCall(callCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 20; i++ {
			if err := st.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: int32(i)}}}); err != nil {
				t.Fatal(err)
			}
			m, err := st.Recv()
			if err != nil || len(m.Payload.Body) != i {
				t.Fatalf("round %d: %v %v", i, m, err)
			}
		}
		if err := st.CloseSend(); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err != io.EOF {
			t.Errorf("end: %v", err)
		}
	})

	t.Run("error status with details", func(t *testing.T) {
		msg := "précondition ☃ failed, 100%"
		_, err := tc.UnaryCall(callCtx(t), &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.FailedPrecondition), Message: msg}})
		st := status.Convert(err)
		if st.Code() != codes.FailedPrecondition || st.Message() != msg {
			t.Fatalf("status %v %q", st.Code(), st.Message())
		}
		d := st.Details()
		if len(d) != 1 {
			t.Fatalf("details %v", d)
		}
		if p, ok := d[0].(*testpb.Payload); !ok || string(p.Body) != "detail: "+msg {
			t.Errorf("detail %v", d[0])
		}
		// The same status from a bidirectional stream, after messages.
		bs, err := tc.FullDuplexCall(callCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		_ = bs.Send(&testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{{Size: 3}}})
		if _, err := bs.Recv(); err != nil {
			t.Fatal(err)
		}
		_ = bs.Send(&testpb.StreamingOutputCallRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.ResourceExhausted), Message: "no more"}})
		if _, err := bs.Recv(); status.Code(err) != codes.ResourceExhausted || status.Convert(err).Message() != "no more" {
			t.Errorf("bidi status: %v", err)
		}
	})

	t.Run("deadline expires", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(callCtx(t), "wait", "cancel"), 300*time.Millisecond)
		defer cancel()
		_, err := tc.UnaryCall(ctx, &testpb.SimpleRequest{})
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("got %v", err)
		}
		waitCanceled(t, tc, 1)
	})

	t.Run("client cancel resets the app's stream", func(t *testing.T) {
		// No deadline: the app can only learn of the cancel from the
		// RST_STREAM loopgate passes on.
		ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(callCtx(t), "wait", "cancel"))
		time.AfterFunc(200*time.Millisecond, cancel)
		_, err := tc.UnaryCall(ctx, &testpb.SimpleRequest{})
		if status.Code(err) != codes.Canceled {
			t.Fatalf("got %v", err)
		}
		waitCanceled(t, tc, 2)
	})

	t.Run("HTTP/1.1 client to the h2c app", func(t *testing.T) {
		c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableCompression: true}}
		defer c.CloseIdleConnections()
		resp, err := c.Get("http://" + site.plainAddr() + "/info")
		if err != nil {
			t.Fatal(err)
		}
		var info map[string]any
		err = json.NewDecoder(resp.Body).Decode(&info)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%d %v", resp.StatusCode, err)
		}
		if info["proto"] != "HTTP/2.0" || info["te"] != "trailers" || info["token_left"] != false || info["scheme"] != "http" ||
			info["host"] != site.plainAddr() || !strings.HasPrefix(info["peer"].(string), "127.0.0.1:") {
			t.Errorf("the app saw %v", info)
		}
		body := strings.Repeat("x", 100<<10)
		resp, err = c.Post("http://"+site.plainAddr()+"/echo", "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(got) != body || resp.Trailer.Get("Echo-Bytes") != strconv.Itoa(len(body)) {
			t.Errorf("echo: %d bytes, %v, trailers %v", len(got), err, resp.Trailer)
		}
	})
}

// waitCanceled waits until the app has counted n calls that ended because
// their client went away.
func waitCanceled(t *testing.T, tc testpb.TestServiceClient, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := tc.UnaryCall(callCtx(t), &testpb.SimpleRequest{FillUsername: true})
		if err != nil {
			t.Fatal(err)
		}
		if r.Username == strconv.Itoa(n) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the app counted %s canceled calls, want %d", r.Username, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func grpcConnOf(t *testing.T, s *grpcSite) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: s.roots})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// TestGRPCRecycleUnderLoad: recycling an h2c app while gRPC calls, unary
// and streaming, keep coming fails none of them: the new process is ready
// first, the old one is drained, its h2c connections end with a GOAWAY,
// and it is asked to stop over HTTP/2 and exits.
func TestGRPCRecycleUnderLoad(t *testing.T) {
	site := startGRPCSite(t, nil)
	tc := site.client(t)
	var hdr metadata.MD
	if _, err := tc.EmptyCall(callCtx(t), &testpb.Empty{}, grpc.Header(&hdr)); err != nil {
		t.Fatal(err)
	}
	oldPID, _ := strconv.Atoi(hdr.Get("app-pid")[0])

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var calls int
	var failures []error
	fail := func(err error) {
		mu.Lock()
		failures = append(failures, err)
		mu.Unlock()
	}
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				var err error
				if i%2 == 0 {
					_, err = tc.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: 1024})
				} else {
					var st grpc.ServerStreamingClient[testpb.StreamingOutputCallResponse]
					st, err = tc.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{
						ResponseParameters: []*testpb.ResponseParameters{{Size: 10}, {Size: 10, IntervalUs: 20000}, {Size: 10}}})
					for err == nil {
						_, err = st.Recv()
					}
					if err == io.EOF {
						err = nil
					}
				}
				cancel()
				if err != nil {
					fail(err)
				}
				mu.Lock()
				calls++
				mu.Unlock()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := site.sup.Apps()[0].Recycle(ctx, supervisor.RecycleManual); err != nil {
		t.Fatal(err)
	}
	// Calls go on while the old process drains and stops.
	deadline := time.Now().Add(20 * time.Second)
	for loopgatetest.Alive(oldPID) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	if loopgatetest.Alive(oldPID) {
		t.Errorf("the old process %d still runs 20 s after the recycle", oldPID)
	}
	if _, err := tc.EmptyCall(callCtx(t), &testpb.Empty{}, grpc.Header(&hdr)); err != nil || hdr.Get("app-pid")[0] == strconv.Itoa(oldPID) {
		t.Errorf("after the recycle: %v, pid %v (old %d)", err, hdr.Get("app-pid"), oldPID)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(failures) > 0 || calls < 20 {
		t.Errorf("%d calls, %d failed: %v", calls, len(failures), failures[:min(len(failures), 5)])
	}
}

// TestGRPCAppOffline: app_offline.htm answers gRPC calls with UNAVAILABLE
// and the cause, stops the h2c app (drained, GOAWAY, shutdown request over
// HTTP/2), and its removal brings a new process, probed over HTTP/2.
func TestGRPCAppOffline(t *testing.T) {
	site := startGRPCSite(t, nil)
	tc := site.client(t)
	var hdr metadata.MD
	if _, err := tc.EmptyCall(callCtx(t), &testpb.Empty{}, grpc.Header(&hdr)); err != nil {
		t.Fatal(err)
	}
	oldPID, _ := strconv.Atoi(hdr.Get("app-pid")[0])
	offline := filepath.Join(site.dir, "app_offline.htm")
	if err := os.WriteFile(offline, []byte("<p>maintenance</p>"), 0o644); err != nil {
		t.Fatal(err)
	}
	want := "loopgate: 503 Service Unavailable: the application is offline (app_offline.htm)"
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := tc.EmptyCall(callCtx(t), &testpb.Empty{})
		st := status.Convert(err)
		if st.Code() == codes.Unavailable && st.Message() == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %v %q 10 s after app_offline.htm", st.Code(), st.Message())
		}
		time.Sleep(20 * time.Millisecond)
	}
	loopgatetest.WaitDead(t, 20*time.Second, oldPID)
	if err := os.Remove(offline); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(20 * time.Second)
	for {
		_, err := tc.EmptyCall(callCtx(t), &testpb.Empty{}, grpc.Header(&hdr))
		if err == nil {
			if hdr.Get("app-pid")[0] == strconv.Itoa(oldPID) {
				t.Fatal("the old process answered after app_offline")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer 20 s after app_offline.htm went: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestGRPCStartFailureNotHTTP2: an app that speaks only HTTP/1.1 behind
// backendProtocol="h2c" (examples/hello) fails its start at once (not
// after startupTimeLimit) with ErrNotHTTP2, and a gRPC client gets
// UNAVAILABLE naming the 502.5.
func TestGRPCStartFailureNotHTTP2(t *testing.T) {
	site := startGRPCSite(t, func(s *configload.AppSpec) {
		s.ProcessPath = helloBinary
		s.StartupTimeLimit = 60 * time.Second
	})
	tc := site.client(t)
	start := time.Now()
	_, err := tc.EmptyCall(callCtx(t), &testpb.Empty{})
	took := time.Since(start)
	st := status.Convert(err)
	if st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "502.5") {
		t.Fatalf("%v %q", st.Code(), st.Message())
	}
	if took > 30*time.Second {
		t.Errorf("the start failed after %v: the startupTimeLimit, not the first HTTP/1.1 answer", took)
	}
	e := site.sup.Apps()[0].Status().LastStartError
	t.Logf("failed after %v: %s", took, e)
	if !strings.Contains(e, "not in HTTP/2") || !strings.Contains(e, "HTTP/1.1") {
		t.Errorf("LastStartError %q", e)
	}
}

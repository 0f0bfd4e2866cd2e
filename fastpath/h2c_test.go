package fastpath

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/loopgate/loopgate/configload"
	"github.com/loopgate/loopgate/supervisor"
)

// h2cBackend serves the harness's app with an in-process server that
// speaks HTTP/2 with prior knowledge, and sets backendProtocol="h2c".
func (h *tlsHarness) h2cBackend(handler http.HandlerFunc) {
	bs := httptest.NewUnstartedServer(handler)
	bs.Config.Protocols = new(http.Protocols)
	bs.Config.Protocols.SetUnencryptedHTTP2(true)
	bs.Start()
	h.t.Cleanup(bs.Close)
	h.h2cBackendAt(strings.TrimPrefix(bs.URL, "http://"))
}

// h2cBackendAt makes the app at addr, which speaks HTTP/2 with prior
// knowledge, the harness's backend, and sets backendProtocol="h2c".
func (h *tlsHarness) h2cBackendAt(addr string) {
	up := newUpstream(addr, &h.srv.cfg)
	h.t.Cleanup(up.Close)
	h.app.addBackend(&fakeBackend{addr: addr, token: "h2c-token", pid: 78, up: up})
	h.setSpec(func(s *configload.AppSpec) { s.BackendProtocol = configload.BackendH2C })
}

// TestH2CResetsAndTimeouts: an app that resets its stream mid-body has the
// client's stream reset (HTTP/2) or connection cut (HTTP/1.1); a stream
// with no activity for requestTimeout is reset at the app and answered
// 502.3 naming the timeout.
func TestH2CResetsAndTimeouts(t *testing.T) {
	h := newTLSHarness(t, Config{})
	appCanceled := make(chan string, 4)
	h.h2cBackend(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("MS-ASPNETCORE-TOKEN") != "h2c-token" || r.ProtoMajor != 2 {
			w.WriteHeader(400)
			return
		}
		switch r.URL.Path {
		case "/abort":
			_, _ = io.WriteString(w, "partial")
			http.NewResponseController(w).Flush()
			panic(http.ErrAbortHandler) // RST_STREAM to loopgate
		case "/silent":
			select {
			case <-r.Context().Done():
				appCanceled <- r.URL.Path
			case <-time.After(20 * time.Second):
			}
		case "/stall":
			_, _ = io.WriteString(w, "first")
			http.NewResponseController(w).Flush()
			select {
			case <-r.Context().Done():
				appCanceled <- r.URL.Path
			case <-time.After(20 * time.Second):
			}
		}
	})
	for _, h2 := range []bool{true, false} {
		resp, err := h.client(h2).Get(h.url("/abort"))
		if err != nil {
			t.Fatalf("h2=%v: %v", h2, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Errorf("h2=%v: the body the app cut reached the client as complete: %q", h2, b)
		}
	}

	h.setSpec(func(s *configload.AppSpec) { s.RequestTimeout = 300 * time.Millisecond })
	resp, err := h.client(true).Get(h.url("/silent"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 502 || !strings.Contains(string(b), "requestTimeout") {
		t.Errorf("silent app: %d %s", resp.StatusCode, b)
	}
	resp, err = h.client(true).Get(h.url("/stall"))
	if err != nil {
		t.Fatal(err)
	}
	b, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || string(b) != "first" {
		t.Errorf("stalled app: %q %v", b, err)
	}
	for _, want := range []string{"/silent", "/stall"} {
		select {
		case got := <-appCanceled:
			if got != want {
				t.Errorf("app saw %s canceled, want %s", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the app never saw %s canceled", want)
		}
	}
}

// TestGRPCStatusAnswers: loopgate's own answers to a gRPC client are gRPC
// statuses (Trailers-Only, HTTP 200), to HTTP/2 and HTTP/1.1 clients; other
// clients still get the pages.
func TestGRPCStatusAnswers(t *testing.T) {
	h := newTLSHarness(t, Config{})
	h.backend(func(w http.ResponseWriter, r *http.Request) {})
	cc, err := grpc.NewClient(h.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: h.roots})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	tc := testpb.NewTestServiceClient(cc)
	call := func() *status.Status {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := tc.EmptyCall(ctx, &testpb.Empty{})
		return status.Convert(err)
	}
	h.app.offline = []byte("<p>down for maintenance</p>")
	for o, want := range map[supervisor.Outcome]string{
		supervisor.StartFailed: "loopgate: 502.5 ANCM Out-Of-Process Startup Failure: the application did not start",
		supervisor.Offline:     "loopgate: 503 Service Unavailable: the application is offline (app_offline.htm)",
		supervisor.Stopping:    "loopgate: Service Unavailable",
	} {
		h.app.setOutcome(o)
		if st := call(); st.Code() != codes.Unavailable || st.Message() != want {
			t.Errorf("%v: %v %q", o, st.Code(), st.Message())
		}
	}
	// HTTP/1.1, gRPC-Web style, and a plain client.
	h.app.setOutcome(supervisor.StartFailed)
	req, _ := http.NewRequest("POST", h.url("/grpc.testing.TestService/EmptyCall"), strings.NewReader(""))
	req.Header.Set("Content-Type", "application/grpc-web+proto")
	resp, err := h.client(false).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Grpc-Status") != "14" || len(b) != 0 || resp.Header.Get("Content-Type") != "application/grpc" ||
		!strings.HasPrefix(resp.Header.Get("Grpc-Message"), "loopgate: 502.5") {
		t.Errorf("HTTP/1.1 gRPC client: %d %v %q", resp.StatusCode, resp.Header, b)
	}
	resp, err = h.client(false).Get(h.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 502 || !strings.Contains(string(b), "502.5") || resp.Header.Get("Grpc-Status") != "" {
		t.Errorf("plain client: %d %v", resp.StatusCode, resp.Header)
	}
	if got := grpcPercentEncode("a%b\nç"); got != "a%25b%0A%C3%A7" {
		t.Errorf("percent-encoding: %q", got)
	}
}

// TestH2CDrainSendsGoAway: draining an upstream closes its idle h2c
// connections with a GOAWAY (NO_ERROR) before the FIN.
func TestH2CDrainSendsGoAway(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	frames := make(chan []byte, 1) // frame types the server read, up to EOF
	// The client's acknowledgement of the server's SETTINGS: the drain
	// waits for it, or the ACK could follow the GOAWAY (legal, and not
	// what is tested here).
	acked := make(chan struct{})
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = c.Write([]byte{0, 0, 0, 4, 0, 0, 0, 0, 0}) // SETTINGS
		br := bufio.NewReader(c)
		preface := make([]byte, 24)
		if _, err := io.ReadFull(br, preface); err != nil {
			frames <- nil
			return
		}
		var types []byte
		var hdr [9]byte
		sawAck := false
		for {
			if _, err := io.ReadFull(br, hdr[:]); err != nil {
				frames <- types
				return
			}
			n := int(binary.BigEndian.Uint32(append([]byte{0}, hdr[:3]...)))
			payload := make([]byte, n)
			if _, err := io.ReadFull(br, payload); err != nil {
				frames <- types
				return
			}
			types = append(types, hdr[3])
			if hdr[3] == 4 && hdr[4]&1 != 0 && !sawAck {
				close(acked)
				sawAck = true
			}
			if hdr[3] == 7 && binary.BigEndian.Uint32(payload[4:8]) != 0 {
				types = append(types, 0xff) // not NO_ERROR
			}
		}
	}()
	cfg := Defaults()
	up := newUpstream(l.Addr().String(), &cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cc, err := up.h2c().get(ctx, h2cWait{})
	if err != nil {
		t.Fatal(err)
	}
	cc.Release()
	select {
	case <-acked:
	case <-time.After(10 * time.Second):
		t.Fatal("the client never acknowledged the server's SETTINGS")
	}
	up.Drain()
	if _, err := up.h2c().get(ctx, h2cWait{}); !errors.Is(err, errPoolClosed) {
		t.Errorf("get after Drain: %v", err)
	}
	select {
	case types := <-frames:
		if len(types) == 0 || types[len(types)-1] != 7 {
			t.Errorf("frames from loopgate before its FIN: %v, want a GOAWAY (7) with NO_ERROR last", types)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the connection was not closed")
	}
}

// TestH2CRequestTrailers: an HTTP/2 client's request trailers reach an h2c
// app after the body (small or large, with or without a length), except
// those the header rules drop.
func TestH2CRequestTrailers(t *testing.T) {
	h := newTLSHarness(t, Config{})
	h.h2cBackend(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("Seen-Bytes", strconv.FormatInt(n, 10))
		w.Header().Set("Seen-Checksum", r.Trailer.Get("X-Checksum"))
		w.Header().Set("Seen-Token", r.Trailer.Get("Ms-Aspnetcore-Token"))
		w.Header().Set("Seen-Announced", strconv.Itoa(len(r.Trailer)))
	})
	for _, size := range []int{16, 64 << 10} {
		for _, sized := range []bool{true, false} {
			var body io.Reader = strings.NewReader(strings.Repeat("t", size))
			if !sized {
				body = io.MultiReader(body) // no length known
			}
			req, _ := http.NewRequest("POST", h.url("/up"), body)
			req.Trailer = http.Header{"X-Checksum": nil, "Ms-Aspnetcore-Token": nil}
			req.Header.Set("Content-Type", "application/grpc")

			// The values are set before the body ends (the client reads them then).
			req.Trailer.Set("X-Checksum", "c0ffee")
			req.Trailer.Set("Ms-Aspnetcore-Token", "forged")
			resp, err := h.client(true).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.Header.Get("Seen-Bytes") != strconv.Itoa(size) || resp.Header.Get("Seen-Checksum") != "c0ffee" ||
				resp.Header.Get("Seen-Token") != "" || resp.Header.Get("Seen-Announced") != "1" {
				t.Errorf("%d bytes, sized %v: the app saw %v", size, sized, resp.Header)
			}
		}
	}
}

// nativeService is grpc-go's own HTTP/2 server's view of TestService: it
// fails UnaryCall with the status asked for (a Trailers-Only response:
// one HEADERS frame with END_STREAM) and echoes the rest.
type nativeService struct {
	testpb.UnimplementedTestServiceServer
}

func (nativeService) UnaryCall(_ context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	if s := req.ResponseStatus; s != nil {
		return nil, status.Error(codes.Code(s.Code), s.Message)
	}
	return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: make([]byte, req.ResponseSize)}}, nil
}

// TestGRPCNativeServer: an app on grpc-go's own HTTP/2 transport (not
// net/http's), whose errors are Trailers-Only responses, through loopgate:
// the status arrives intact, and so do ordinary answers.
func TestGRPCNativeServer(t *testing.T) {
	h := newTLSHarness(t, Config{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	testpb.RegisterTestServiceServer(gs, nativeService{})
	go func() { _ = gs.Serve(l) }()
	defer gs.Stop()
	up := newUpstream(l.Addr().String(), &h.srv.cfg)
	defer up.Close()
	h.app.addBackend(&fakeBackend{addr: l.Addr().String(), token: "t", pid: 79, up: up})
	h.setSpec(func(s *configload.AppSpec) { s.BackendProtocol = configload.BackendH2C })

	cc, err := grpc.NewClient(h.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: h.roots})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	tc := testpb.NewTestServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := tc.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: 100})
	if err != nil || len(r.Payload.Body) != 100 {
		t.Fatalf("%v %v", r, err)
	}
	_, err = tc.UnaryCall(ctx, &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.NotFound), Message: "no such thing"}})
	if st := status.Convert(err); st.Code() != codes.NotFound || st.Message() != "no such thing" {
		t.Errorf("Trailers-Only status: %v %q", st.Code(), st.Message())
	}
	if _, err := tc.EmptyCall(ctx, &testpb.Empty{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("unimplemented method: %v", err)
	}
}

// rawH2CApp is an HTTP/2 server at the frame level: it resets the first
// stream with code first (REFUSED_STREAM, INTERNAL_ERROR, ...) and answers
// every later one with 200 and no body. It reports each stream it saw.
func rawH2CApp(t *testing.T, first uint32) (addr string, streams chan uint32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	streams = make(chan uint32, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				br := bufio.NewReader(c)
				if _, err := io.ReadFull(br, make([]byte, 24)); err != nil {
					return
				}
				_, _ = c.Write([]byte{0, 0, 0, 4, 0, 0, 0, 0, 0})
				frame := func(typ, flags byte, id uint32, payload ...byte) {
					h := []byte{byte(len(payload) >> 16), byte(len(payload) >> 8), byte(len(payload)), typ, flags, 0, 0, 0, 0}
					binary.BigEndian.PutUint32(h[5:], id)
					_, _ = c.Write(append(h, payload...))
				}
				var hdr [9]byte
				n := 0
				for {
					if _, err := io.ReadFull(br, hdr[:]); err != nil {
						return
					}
					length := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
					if _, err := io.ReadFull(br, make([]byte, length)); err != nil {
						return
					}
					id := binary.BigEndian.Uint32(hdr[5:]) & 0x7fffffff
					switch hdr[3] {
					case 4: // SETTINGS
						if hdr[4]&1 == 0 {
							frame(4, 1, 0)
						}
					case 1: // HEADERS
						streams <- id
						if n++; n == 1 {
							code := make([]byte, 4)
							binary.BigEndian.PutUint32(code, first)
							frame(3, 0, id, code...) // RST_STREAM
						} else {
							frame(1, 5, id, 0x88) // :status 200, END_STREAM|END_HEADERS
						}
					}
				}
			}()
		}
	}()
	return l.Addr().String(), streams
}

// TestH2CRetryRule: a stream the app refused (REFUSED_STREAM: it never
// processed it) is sent again, even a POST; a POST whose stream the app
// reset otherwise is not, and gets 502.3.
func TestH2CRetryRule(t *testing.T) {
	for _, tc := range []struct {
		code    uint32
		status  int
		streams int
	}{{7, 200, 2}, {2, 502, 1}} {
		h := newHarness(t, Config{}, "/")
		addr, streams := rawH2CApp(t, tc.code)
		h.backend("/", addr)
		h.setSpec("/", func(s *configload.AppSpec) { s.BackendProtocol = configload.BackendH2C })
		resp, err := h.client().Post(h.url("/call"), "application/octet-stream", strings.NewReader("once"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status || len(streams) != tc.streams {
			t.Errorf("RST_STREAM code %d: %d after %d streams, want %d after %d", tc.code, resp.StatusCode, len(streams), tc.status, tc.streams)
		}
	}
}

// TestH2CFlowControl: loopgate holds an h2c app back while its client
// reads nothing (the app's writes block: flow control passes through, no
// unbounded buffering), then relays every byte once the client reads; the
// same holds for an upload the app does not read.
func TestH2CFlowControl(t *testing.T) {
	h := newTLSHarness(t, Config{})
	var written atomic.Int64
	const total = 96 << 20
	release := make(chan struct{})
	h.h2cBackend(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" {
			// Answer at once and read the upload slowly: the client's
			// writes must block rather than fill loopgate's memory.
			w.WriteHeader(200)
			http.NewResponseController(w).Flush()
			select {
			case <-release:
			case <-time.After(20 * time.Second):
			}
			n, _ := io.Copy(io.Discard, r.Body)
			_, _ = io.WriteString(w, strconv.FormatInt(n, 10))
			return
		}
		chunk := make([]byte, 64<<10)
		for written.Load() < total {
			n, err := w.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	c := h.client(true)
	resp, err := c.Get(h.url("/big"))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the client reads nothing
	held := written.Load()
	t.Logf("held back after %d KiB", held>>10)
	if held >= 32<<20 {
		t.Errorf("the app wrote %d MiB to a client that read nothing", held>>20)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != total {
		t.Errorf("got %d bytes of %d: %v", n, total, err)
	}

	var sent atomic.Int64
	pr, pw := io.Pipe()
	go func() {
		chunk := make([]byte, 64<<10)
		for sent.Load() < total {
			n, err := pw.Write(chunk)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", h.url("/up"), pr)
	h.setSpec(func(s *configload.AppSpec) { s.MaxAllowedContentLength = 1 << 30 })
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the app reads nothing
	t.Logf("upload held back after %d KiB", sent.Load()>>10)
	if s := sent.Load(); s >= 32<<20 || s == 0 {
		t.Errorf("the client sent %d KiB to an app that read nothing", s>>10)
	}
	close(release)
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(b) != strconv.Itoa(total) {
		t.Errorf("the app read %q bytes of %d: %v", b, total, err)
	}
}

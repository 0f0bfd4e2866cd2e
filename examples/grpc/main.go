// Command grpc is a gRPC app hostable by loopgate with
// backendProtocol="h2c": grpc-go's interop TestService (unary, server-,
// client- and bidirectional streaming, statuses with details) and the
// health service, served by net/http over HTTP/2 without TLS behind the
// pairing middleware (token check, shutdown request, forwarded headers),
// plus two plain HTTP endpoints for HTTP/1.1 clients. Its web.config sits
// beside it; loopgate's gRPC tests and make bench-grpc start it.
//
// Every RPC answers with header metadata saying what the app saw:
// app-pid, app-peer (the client address after X-Forwarded-For),
// app-token (whether MS-ASPNETCORE-TOKEN was left for the app: "absent"
// is right). UnaryCall with metadata "wait: cancel" blocks until its call
// ends and counts it; FillUsername returns that count as Username.
//
//	GET  /info  JSON: protocol, peer, host, path, forwarded headers
//	POST /echo  the body back, with trailer Echo-Bytes
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/loopgate/loopgate/pairing"
)

// maxMsg is the largest message either way (grpc-go's default is 4 MiB,
// and the tests send a 4 MiB payload plus its framing).
const maxMsg = 16 << 20

func main() {
	cfg, hosted := pairing.FromEnv()
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(maxMsg), grpc.MaxSendMsgSize(maxMsg))
	testpb.RegisterTestServiceServer(gs, &service{})
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)

	srv := &http.Server{Addr: pairing.ListenAddr("127.0.0.1:5000"), ReadHeaderTimeout: 10 * time.Second}
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
	srv.Handler = cfg.Middleware(pairing.Options{Stop: stop})(handler(gs))
	pairing.EnableH2C(srv)
	log.Printf("grpc example listening on %s (hosted: %v, pid %d)", srv.Addr, hosted, os.Getpid())
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}

// handler sends gRPC calls to gs and the rest to the plain endpoints.
func handler(gs *grpc.Server) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /info", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"proto": r.Proto, "peer": r.RemoteAddr, "host": r.Host, "path": r.URL.Path, "scheme": pairing.Scheme(r),
			"token_left": r.Header.Get("MS-ASPNETCORE-TOKEN") != "", "te": r.Header.Get("Te"), "pid": os.Getpid(),
		})
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "Echo-Bytes")
		w.Header().Set("Content-Type", r.Header.Get("Content-Type"))
		n, _ := io.Copy(w, r.Body)
		w.Header().Set("Echo-Bytes", strconv.FormatInt(n, 10))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			gs.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

type service struct {
	testpb.UnimplementedTestServiceServer
	canceled atomic.Int64 // calls with "wait: cancel" that ended by their context
}

// seen sends the header metadata that says what the app saw.
func seen(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	tok := "absent"
	if len(md.Get("ms-aspnetcore-token")) > 0 {
		tok = "present"
	}
	addr := ""
	if p, ok := peer.FromContext(ctx); ok {
		addr = p.Addr.String()
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs("app-pid", strconv.Itoa(os.Getpid()), "app-peer", addr, "app-token", tok))
}

// echoStatus is the status a request asks for, with a detail that
// carries the message back, or nil.
func echoStatus(s *testpb.EchoStatus) error {
	if s == nil || s.Code == 0 {
		return nil
	}
	st := status.New(codes.Code(s.Code), s.Message)
	if d, err := st.WithDetails(&testpb.Payload{Body: []byte("detail: " + s.Message)}); err == nil {
		st = d
	}
	return st.Err()
}

func payload(n int32) *testpb.Payload {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return &testpb.Payload{Body: b}
}

func (s *service) EmptyCall(ctx context.Context, _ *testpb.Empty) (*testpb.Empty, error) {
	seen(ctx)
	return &testpb.Empty{}, nil
}

func (s *service) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	seen(ctx)
	md, _ := metadata.FromIncomingContext(ctx)
	if w := md.Get("wait"); len(w) == 1 && w[0] == "cancel" {
		select {
		case <-ctx.Done():
			s.canceled.Add(1)
			return nil, status.FromContextError(ctx.Err()).Err()
		case <-time.After(30 * time.Second):
			return nil, status.Error(codes.Internal, "the call was never canceled")
		}
	}
	if err := echoStatus(req.ResponseStatus); err != nil {
		return nil, err
	}
	resp := &testpb.SimpleResponse{Payload: payload(req.ResponseSize)}
	if req.Payload != nil && req.ResponseSize < 0 {
		resp.Payload = req.Payload
	}
	if req.FillUsername {
		resp.Username = fmt.Sprint(s.canceled.Load())
	}
	if req.Payload != nil {
		resp.OauthScope = strconv.Itoa(len(req.Payload.Body))
	}
	return resp, nil
}

func (s *service) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	seen(stream.Context())
	for _, p := range req.ResponseParameters {
		if p.IntervalUs > 0 {
			time.Sleep(time.Duration(p.IntervalUs) * time.Microsecond)
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: payload(p.Size)}); err != nil {
			return err
		}
	}
	return echoStatus(req.ResponseStatus)
}

func (s *service) StreamingInputCall(stream grpc.ClientStreamingServer[testpb.StreamingInputCallRequest, testpb.StreamingInputCallResponse]) error {
	seen(stream.Context())
	var total int32
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: total})
		}
		if err != nil {
			return err
		}
		total += int32(len(req.GetPayload().GetBody()))
	}
}

func (s *service) FullDuplexCall(stream grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	seen(stream.Context())
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := echoStatus(req.ResponseStatus); err != nil {
			return err
		}
		for _, p := range req.ResponseParameters {
			if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: payload(p.Size)}); err != nil {
				return err
			}
		}
	}
}

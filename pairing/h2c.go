package pairing

import "net/http"

// EnableH2C makes srv serve HTTP/2 without TLS, with prior knowledge (what
// loopgate speaks to an app whose web.config sets handler setting
// backendProtocol="h2c", and what gRPC needs), besides HTTP/1.1 (what it
// speaks by default) and HTTP/2 over TLS. One binary so serves behind
// loopgate either way, and on its own. Call it before srv starts serving;
// it replaces srv.Protocols.
//
// A gRPC server (google.golang.org/grpc) is hosted by serving it as the
// handler behind the middleware, so that the token check, the shutdown
// request and the forwarded headers apply to its calls:
//
//	cfg, _ := pairing.FromEnv()
//	srv := &http.Server{Addr: pairing.ListenAddr("127.0.0.1:5000")}
//	srv.Handler = cfg.Middleware(pairing.Options{Stop: ...})(grpcServer) // *grpc.Server is an http.Handler
//	pairing.EnableH2C(srv)
//	srv.ListenAndServe()
func EnableH2C(srv *http.Server) {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetHTTP2(true)
	p.SetUnencryptedHTTP2(true)
	srv.Protocols = &p
}

// Package pairing owns both halves of the pairing token.
//
// The forwarder side generates tokens (NewToken) that the supervisor hands
// to each backend in ASPNETCORE_TOKEN. The app side is middleware for
// net/http and fasthttp that gives a Go backend the contract of ASP.NET
// Core's IIS integration: reject requests without the right
// MS-ASPNETCORE-TOKEN, honour the graceful shutdown request, strip the path
// base and apply X-Forwarded-For/-Proto from the loopback forwarder.
//
// EnableH2C makes a net/http server speak HTTP/2 without TLS too, for an
// app whose web.config sets backendProtocol="h2c" (gRPC).
//
// The fasthttp flavour is in the fastpairing subpackage, so that users of
// NewToken (the supervisor) do not depend on fasthttp.
//
// A Go app becomes hostable by loopgate with three lines, and still runs on
// its own when the variables are absent:
//
//	cfg, _ := pairing.FromEnv()
//	srv := &http.Server{Addr: pairing.ListenAddr("127.0.0.1:5000")}
//	srv.Handler = cfg.Middleware(pairing.Options{Stop: func() { srv.Shutdown(context.Background()) }})(mux)
//
// It does not do what has no meaning on Linux or for a Go server: Windows
// authentication (MS-ASPNETCORE-WINAUTHTOKEN), the DEBUG method, request
// body limits (net/http has none to lift), or ASPNETCORE_IIS_* flags.
package pairing

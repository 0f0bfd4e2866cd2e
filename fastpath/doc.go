// Package fastpath is loopgate's front server and forwarding hot path.
//
// It accepts client connections (plain and TLS listeners, with edge limits:
// header size, header read timeout, idle keep-alive timeout, body and send
// inactivity timeouts, a connection cap), routes each request to an app by
// the longest virtual-path prefix, asks the app (the supervisor, through
// FromSupervisor) for a ready backend, rewrites the request head the way the
// hosting model prescribes (pairing token, X-Forwarded-*, anti-spoofing,
// hop-by-hop; see the trust model in headers.go), forwards it over a pooled
// loopback keep-alive connection and streams the response back as it
// arrives. It renders the 502.5, 502.3 and 503 answers, enforces
// maxAllowedContentLength, retries what never reached a backend, refuses
// ambiguous request framing, and tunnels WebSockets.
//
// It does not buffer bodies (nothing is held whole in memory in either
// direction), does not cache, does not follow redirects, does not speak
// TLS to backends, and does not start or stop processes: that is the
// supervisor's job. It speaks HTTP/1.1 to backends, or HTTP/2 with prior
// knowledge to an app with backendProtocol="h2c" (h2c.go: gRPC).
//
// One request, file by file: server.go and conns.go accept it (connection
// limit, lingering close; park.go takes a plain keep-alive connection idle
// for a second out of its goroutine into an epoll set; headguard.go
// refuses a head ended by a bare LF), requestline.go applies the version
// rules and resolves the path's dot segments, app.go routes it on that
// path, exchange.go holds its state,
// forward.go runs the attempts (acquire, connect, send, read the head;
// queue.go bounds the requests waiting for a backend connection, upstream.go
// pools those connections, sockmap.go keeps a large body's connection off
// the sockmap's TCP fallback),
// retry.go decides retries in one function, retryable; headers.go and
// requesthead.go rewrite the head,
// upload.go streams the request body (reqtrailers.go: the client's
// trailers after it, kept by one rule, requestTrailerKept), response.go and relay.go turn the
// backend's response into the client's, answer.go gives loopgate's own
// answers, websocket.go tunnels (tunnelpoll.go: a plain tunnel idle in
// the same epoll set, no goroutine or buffer), h2.go and h2conn.go carry HTTP/2 clients
// onto the same exchange, and h2c.go sends an exchange to an h2c app as a
// stream (h2cstream.go) on a multiplexed connection (h2cpool.go), the
// client's request trailers (HTTP/2, or an HTTP/1.1 chunked trailer
// section) following as HTTP/2 trailers by the same rule, with loopgate's own answers to gRPC clients in grpcstatus.go. The system calls underneath (raw reads and
// writes, the stale-connection peek, writev) are internal/sockio's.
//
// fastpath is the forwarder's only user of fasthttp types. Nothing on the
// forwarding path allocates per request; TestForwardAllocs and
// TestHeaderRewriteAllocs enforce it.
package fastpath

// Package fastpath is loopgate's front server and forwarding hot path.
//
// It routes each request to an app by the longest virtual-path prefix,
// asks the supervisor for a ready backend, rewrites the request headers the
// way the hosting model prescribes (token, X-Forwarded-*, anti-spoofing,
// hop-by-hop), forwards over a pooled loopback keep-alive connection and
// streams the response back. It also renders the 502.5, 502.3 and 503
// answers, tunnels WebSockets and enforces the edge's limits.
//
// fastpath is the forwarder's only user of fasthttp types. Nothing on the
// forwarding path allocates per request; allocation tests enforce it.
package fastpath

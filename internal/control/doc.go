// Package control is loopgate's control channel: the Unix socket through
// which `loopgate recycle`, `loopgate stop` and `loopgate start` reach a
// running `loopgate serve`, as appcmd reaches IIS and HAProxy's runtime
// API its stats socket.
//
// It is for cmd/loopgate, on both ends: Listen and Server on serve's side
// (the caller supplies a Handler that does the work), Do on the
// subcommands' side. It owns the socket file (where it goes by default, its
// permissions, a stale socket left by a SIGKILLed serve, its removal) and
// the wire format: one JSON request line, one JSON response line.
//
// Trust: whoever can connect can recycle and stop apps, and nothing else
// checks who that is. The socket is what keeps everyone else out: it is a
// file that only loopgate's user (mode 0600), or with Options.Group also
// that group (0660), can connect to, in a directory loopgate made or
// checked; a web page cannot reach a Unix socket at all (no CSRF, no DNS
// rebinding), unlike a TCP admin port. It does not authenticate further,
// and it never listens on TCP.
package control

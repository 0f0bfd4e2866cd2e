// Package sockio is the socket layer under loopgate's forwarder: reads and
// writes of TCP connections through raw non-blocking system calls, the
// write-then-wait-for-the-answer of a whole request, the non-blocking peek
// that finds a stale pooled connection, the gathered write (writev) of a
// buffered response head with a body chunk, and the look at a connection
// nobody is reading (PeerEnded: reset, FIN, bytes queued), and a client
// connection's write timeout, armed only when a write has to wait, and a
// backend connection's timeout, kept from one request to the next while
// it would move by little (BackendConn.SetTimeout).
//
// It is for fastpath only, which reads as HTTP while this package reads as
// sockets. It knows nothing of HTTP, parses nothing and owns no connection
// pool or limit; every wrapper behaves as the net.Conn it wraps (deadlines
// and Close included) and allocates nothing per operation once made.
// Linux only.
package sockio

// The request body upload: the pump that streams a large or chunked body
// to the backend while the response is read, how a response that comes
// before the body ended waits for it, and the reading and dropping of a
// body loopgate answers itself.

package fastpath

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/loopgate/loopgate/internal/sockio"
)

// pumpReportWait bounds how long a response head that arrives while the
// request body's last bytes are being written waits for the body pump to
// finish; past it the client connection closes after the response, which is
// safe but costs the client a new connection.
const pumpReportWait = 50 * time.Millisecond

// maxDiscardBytes bounds the request body loopgate reads and drops to give
// its own early answer on a clean connection (see answer).
const maxDiscardBytes = 4 << 20

// clientCheckEvery is how often a pump write that the app does not take
// looks at the client: one that left (RST, or FIN with the body incomplete)
// ends the request then instead of at requestTimeout.
const clientCheckEvery = time.Second

// finSlack is how many bytes of a Content-Length body, besides those the
// kernel still queues, may be held unread above the socket (fasthttp's read
// buffer, a TLS record): a client that sent FIN is taken as gone only when
// even these would not complete its body. A cut closer to the end is left
// to requestTimeout.
const finSlack = 64 << 10

// errClientGone is the pump's write given up because the client left.
var errClientGone = errors.New("client disconnected while the app was not reading the body")

// pumpConn is the backend connection as the pump writes it. Each Write
// waits for the app to take bytes for at most requestTimeout without
// progress (an inactivity timeout, as every wait on the app), and while
// it waits looks at the client every clientCheckEvery: the pump is not
// reading it then, so nothing else would notice it leave. Owned by the
// pump goroutine.
type pumpConn struct {
	net.Conn
	x *exchange
}

func (w *pumpConn) Write(p []byte) (int, error) {
	x := w.x
	rt := x.spec.RequestTimeout
	last := time.Now() // the app's last progress
	n := 0
	for {
		d := clientCheckEvery
		if rt > 0 && rt-time.Since(last) < d {
			d = rt - time.Since(last)
		}
		_ = w.Conn.SetWriteDeadline(time.Now().Add(d))
		m, err := w.Conn.Write(p[n:])
		n += m
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return n, err
		}
		if m > 0 {
			last = time.Now()
		} else if rt > 0 && time.Since(last) >= rt {
			return n, err
		}
		if x.clientGone() {
			return n, errClientGone
		}
	}
}

// clientGone reports, for the pump blocked on the app, a client that
// reset its connection, or sent FIN before enough bytes to complete a
// Content-Length body. A chunked body's end cannot be told without reading
// it, so its client's FIN is not taken as leaving (requestTimeout bounds
// that wait); an HTTP/2 client's reset is watched by h2.go.
func (x *exchange) clientGone() bool {
	tc := tracked(x.ctx.Conn())
	if tc == nil || (x.reqBody == reqBodySized && x.bytesIn >= x.reqLen) {
		return false // HTTP/2; or the whole body was read: only the app is missing
	}
	st := sockio.PeerEnded(tc.Conn)
	return st.Reset ||
		(st.Finished && x.reqBody == reqBodySized && x.bytesIn+int64(st.Queued)+finSlack+int64(x.s.cfg.MaxHeaderBytes) < x.reqLen)
}

// startPump streams the request body to the backend in a goroutine, so the
// response can be read (and relayed) while the upload is still going.
func (x *exchange) startPump() {
	if x.pumpDone == nil {
		x.pumpDone = make(chan error, 1)
	}
	x.pumpBuf = bufPool.Get().(*[]byte)
	x.pumping = true
	head := 0
	if x.reqBody == reqBodyChunked && x.stream == nil {
		// Counted before the pump reads the body (and with it the
		// trailer section, which fasthttp adds to the head's fields).
		head = headFields(&x.ctx.Request.Header)
	}
	go func() {
		err := x.pump(head)
		if err != nil && !appClosed(err) {
			// The request cannot complete: the backend must see it cut
			// short, and the response read waiting on it must end.
			_ = x.conn.Close()
		}
		x.pumpDone <- err
	}()
}

// appClosed reports a pump error that says the app closed its connection
// (the write met its reset or its end): the response read ends by itself,
// after whatever the app answered before it closed, which a close here
// would throw away (an app that refuses an upload with 403 or 413 and
// closes got its client a 502 instead, about once in a hundred).
func appClosed(err error) bool {
	return errors.Is(err, errBodyCut) && (errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET))
}

// pump streams the body; head is headFields of an HTTP/1.1 client's
// chunked request before its body was read.
func (x *exchange) pump(head int) error {
	r := x.ctx.RequestBodyStream()
	cc := x.ctx.Conn()
	x.pw = pumpConn{Conn: x.conn, x: x}
	bw := x.up.hc.AcquireWriter(&x.pw)
	defer x.up.hc.ReleaseWriter(bw)
	buf := *x.pumpBuf
	chunked := x.reqBody == reqBodyChunked
	var hex [20]byte
	for {
		setDeadline(cc.SetReadDeadline, x.s.cfg.BodyReadTimeout)
		n, rerr := r.Read(buf)
		if n > 0 {
			x.bytesIn += int64(n)
			if x.bytesIn > x.limit {
				return errTooLarge
			}
			if x.reqBody == reqBodySized && x.bytesIn == x.reqLen {
				// Before the write: the backend can answer as soon as
				// it has these bytes, before the write returns here.
				x.bodySent.Store(true)
			}
			if chunked {
				_, _ = bw.Write(strconv.AppendInt(hex[:0], int64(n), 16))
				_, _ = bw.WriteString("\r\n")
			}
			_, _ = bw.Write(buf[:n])
			if chunked {
				_, _ = bw.WriteString("\r\n")
			}
			if err := bw.Flush(); err != nil {
				return pumpWriteError(err)
			}
		}
		if rerr == io.EOF {
			if x.bodyCut() {
				// Never complete it for the app: the backend connection
				// is closed without the terminator.
				return clientError{io.ErrUnexpectedEOF}
			}
			if chunked {
				_, _ = bw.WriteString("0\r\n")
				x.writeRequestTrailers(bw, head)
				_, _ = bw.WriteString("\r\n")
				x.bodySent.Store(true) // before the write, as above
				if err := bw.Flush(); err != nil {
					return pumpWriteError(err)
				}
			}
			// The body is sent: from now on the app is waited for, and
			// requestTimeout bounds that wait (send left the response
			// head without a deadline while the body was going).
			setDeadline(x.conn.SetReadDeadline, x.spec.RequestTimeout)
			return nil
		}
		if rerr != nil {
			return clientError{rerr}
		}
	}
}

// pumpWriteError is the pump's report of a failed write to the app.
func pumpWriteError(err error) error {
	if errors.Is(err, errClientGone) {
		return clientError{err}
	}
	return fmt.Errorf("%w: %w", errBodyCut, err)
}

// bodyCut reports, at the request body stream's end, a body the client
// did not finish: a Content-Length body short of its length (fasthttp's
// stream reports the client's FIN as the end), or a chunked body whose
// client connection ended (fasthttp's parser reports the end of the stream
// between chunks, or before the last chunk's CRLF, as the body's clean
// end); over TLS, a close_notify ends the stream too. An HTTP/2 body
// ends only with END_STREAM, so it is never cut here (a reset is an error).
func (x *exchange) bodyCut() bool {
	switch x.reqBody {
	case reqBodySized:
		return x.bytesIn < x.reqLen
	case reqBodyChunked:
		return clientEOF(x.ctx.Conn())
	}
	return false
}

// awaitPump is called when the final response head arrived: it takes the
// pump's report if there is one, waiting up to pumpReportWait when the
// body's last bytes are being written. A pump still running then keeps
// going while the response is relayed, and the client connection closes
// after the response.
func (x *exchange) awaitPump() {
	if !x.pumping {
		return
	}
	select {
	case x.pumpErr = <-x.pumpDone:
		x.pumping = false
	default:
		if x.bodySent.Load() {
			// The backend may have read the whole body and answered
			// before the pump's last write returned: wait the moment
			// that takes, or this client connection would be closed
			// for nothing. The wait is bounded because that write can
			// also be stuck on a backend that answered early and reads
			// no more.
			t := time.NewTimer(pumpReportWait)
			select {
			case x.pumpErr = <-x.pumpDone:
				x.pumping = false
			case <-t.C:
			}
			t.Stop()
		}
	}
	if x.pumping {
		// The backend answered before it had the whole body. The
		// body keeps flowing while the response does (full duplex);
		// what the client has not sent when the response ends is
		// never read, so this client connection cannot carry another
		// request.
		x.ctx.Response.Header.SetConnectionClose()
	} else {
		x.consumed = x.pumpErr == nil
	}
}

// stopPump ends the body pump: at once if it finished, otherwise by closing
// the backend connection and interrupting the client read.
func (x *exchange) stopPump() {
	if !x.pumping {
		return
	}
	select {
	case x.pumpErr = <-x.pumpDone:
	default:
		_ = x.conn.Close()
		_ = x.ctx.Conn().SetReadDeadline(time.Now())
		x.pumpErr = <-x.pumpDone
		if x.pumpErr == nil {
			x.pumpErr = errBodyCut
		}
	}
	x.pumping = false
	x.consumed = x.pumpErr == nil
	if x.pumpErr != nil {
		x.backendOK = false
	}
}

// discardBody reads the rest of the request body and drops it, each read
// bounded by BodyReadTimeout; false when the client failed or stalled.
func (x *exchange) discardBody() bool {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	r := x.ctx.RequestBodyStream()
	cc := x.ctx.Conn()
	for {
		setDeadline(cc.SetReadDeadline, x.s.cfg.BodyReadTimeout)
		n, err := r.Read(*bp)
		x.bytesIn += int64(n)
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
	}
}

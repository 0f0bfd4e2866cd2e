// The request body upload: the pump that streams a large or chunked body
// to the backend while the response is read, how a response that comes
// before the body ended waits for it, and the reading and dropping of a
// body loopgate answers itself.

package fastpath

import (
	"fmt"
	"io"
	"strconv"
	"time"
)

// pumpReportWait bounds how long a response head that arrives while the
// request body's last bytes are being written waits for the body pump to
// finish; past it the client connection closes after the response, which is
// safe but costs the client a new connection.
const pumpReportWait = 50 * time.Millisecond

// maxDiscardBytes bounds the request body loopgate reads and drops to give
// its own early answer on a clean connection (see answer).
const maxDiscardBytes = 4 << 20

// startPump streams the request body to the backend in a goroutine, so the
// response can be read (and relayed) while the upload is still going.
func (x *exchange) startPump() {
	if x.pumpDone == nil {
		x.pumpDone = make(chan error, 1)
	}
	x.pumpBuf = bufPool.Get().(*[]byte)
	x.pumping = true
	go func() {
		err := x.pump()
		if err != nil {
			// The request cannot complete: the backend must see it cut
			// short, and the response read waiting on it must end.
			_ = x.conn.Close()
		}
		x.pumpDone <- err
	}()
}

func (x *exchange) pump() error {
	r := x.ctx.RequestBodyStream()
	cc := x.ctx.Conn()
	bw := x.up.hc.AcquireWriter(x.conn)
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
			setDeadline(x.conn.SetWriteDeadline, x.spec.RequestTimeout)
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
				return fmt.Errorf("%w: %w", errBodyCut, err)
			}
		}
		if rerr == io.EOF {
			if x.bodyCut() {
				// Never complete it for the app: the backend connection
				// is closed without the terminator.
				return clientError{io.ErrUnexpectedEOF}
			}
			if chunked {
				_, _ = bw.WriteString("0\r\n\r\n")
				x.bodySent.Store(true) // before the write, as above
				if err := bw.Flush(); err != nil {
					return fmt.Errorf("%w: %w", errBodyCut, err)
				}
			}
			return nil
		}
		if rerr != nil {
			return clientError{rerr}
		}
	}
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

// The response body: relayed from the backend to the client as it arrives
// (Content-Length, chunked with its trailers, or delimited by the backend
// closing), and a backend failure mid-body turned into an aborted response.

package fastpath

import (
	"bufio"
	"io"
	"net"
)

// bodyKind is how the backend frames its response body.
type bodyKind uint8

const (
	bodyNone       bodyKind = iota
	bodyFixed               // Content-Length
	bodyChunked             // Transfer-Encoding: chunked
	bodyUntilClose          // delimited by the backend closing
)

// SupportsBodyWriteTo tells fasthttp to use WriteTo, which flushes as
// backend data arrives and keeps the inactivity timeouts.
func (x *exchange) SupportsBodyWriteTo() bool { return true }

// WriteTo copies the backend's response body to the client. w is fasthttp's
// buffered connection writer for a Content-Length body, or its chunk writer
// (which flushes every chunk) otherwise. Bytes are flushed whenever the
// backend has nothing more buffered, so a slow stream reaches the client as
// it is produced.
func (x *exchange) WriteTo(w io.Writer) (int64, error) {
	if x.h2s != nil {
		return x.h2cWriteTo(w)
	}
	bw, _ := w.(*bufio.Writer)
	cc := x.ctx.Conn()
	// The first bytes, when the backend reader holds them, follow armSend's
	// deadline at once: arming it again would only read the clock (see
	// trackedConn.idleRead for what that costs). A send timeout needs no
	// renewing.
	armed := x.sendTimed || (x.sendArmed && x.br.Buffered() > 0)
	x.sendArmed = false
	var total int64
	for {
		p, err := x.nextBody()
		if len(p) > 0 {
			if !armed {
				setDeadline(cc.SetWriteDeadline, x.s.cfg.SendTimeout)
			}
			armed = x.sendTimed
			var n int
			var werr error
			gathered := false
			if bw != nil && bw.Buffered() > 0 && len(p) > bw.Available() {
				n, gathered, werr = writeGathered(bw, cc, p)
			}
			if !gathered {
				n, werr = w.Write(p)
			}
			x.consume(n)
			total += int64(n)
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, x.abortClient(err)
		}
		if bw != nil && x.br.Buffered() == 0 && bw.Buffered() > 0 {
			if err := bw.Flush(); err != nil {
				return total, err
			}
		}
	}
}

// writeGathered writes what bw holds followed by p in one writev(2) when c
// is a client connection that can (sockio.ClientConn.WriteGathered); ok is
// false, and nothing was written, when it cannot (TLS).
func writeGathered(bw *bufio.Writer, c net.Conn, p []byte) (n int, ok bool, err error) {
	tc, ok := c.(*trackedConn)
	if !ok {
		return 0, false, nil
	}
	n, err = tc.WriteGathered(bw, p)
	return n, true, err
}

// Read implements io.Reader for completeness; fasthttp uses WriteTo.
func (x *exchange) Read(p []byte) (int, error) {
	b, err := x.nextBody()
	n := copy(p, b)
	x.consume(n)
	if err != nil && err != io.EOF {
		err = x.abortClient(err)
	}
	if n > 0 && err == io.EOF {
		err = nil
	}
	return n, err
}

// nextBody returns the next bytes of the response body, buffered in the
// backend reader; consume must follow with how many were used. It returns
// io.EOF at the body's clean end.
func (x *exchange) nextBody() ([]byte, error) {
	if x.bodyEnd {
		return nil, io.EOF
	}
	switch x.kind {
	case bodyFixed:
		return x.fillRemaining()
	case bodyChunked:
		if x.chunkErr != nil {
			return nil, x.chunkErr
		}
		if x.remaining == 0 {
			n, err := x.readChunkSize()
			if err != nil {
				return nil, err
			}
			if n == 0 {
				if err := x.readTrailers(); err != nil {
					return nil, err
				}
				x.bodyEnd = true
				return nil, io.EOF
			}
			x.remaining = n
		}
		return x.fillRemaining()
	case bodyUntilClose:
		p, err := x.fill()
		if err == io.EOF && len(p) == 0 {
			x.bodyEnd = true
		}
		return p, err
	}
	return nil, io.EOF
}

// fill returns what the backend reader holds, reading more (under the
// requestTimeout inactivity deadline) when it holds nothing.
func (x *exchange) fill() ([]byte, error) {
	if x.br.Buffered() == 0 {
		setDeadline(x.conn.SetReadDeadline, x.spec.RequestTimeout)
		if _, err := x.br.Peek(1); err != nil {
			return nil, err
		}
	}
	return x.br.Peek(x.br.Buffered())
}

// fillRemaining is fill for a framed body: at most the bytes left of the
// body or chunk, and a backend that closed early is errTruncated.
func (x *exchange) fillRemaining() ([]byte, error) {
	p, err := x.fill()
	if err == io.EOF {
		err = errTruncated
	}
	if int64(len(p)) > x.remaining {
		p = p[:x.remaining]
	}
	return p, err
}

// consume discards n body bytes from the backend reader.
func (x *exchange) consume(n int) {
	if n == 0 {
		return
	}
	_, _ = x.br.Discard(n)
	x.bytesOut += int64(n)
	if x.releaseLate && x.bypassesSockmap(x.bytesOut) {
		x.releaseBulk()
	}
	switch x.kind {
	case bodyFixed:
		x.remaining -= int64(n)
		x.bodyEnd = x.remaining == 0
	case bodyChunked:
		x.remaining -= int64(n)
		if x.remaining == 0 {
			x.chunkErr = x.readCRLF() // reported by the next nextBody
		}
	}
}

func (x *exchange) readLine() ([]byte, error) {
	setDeadline(x.conn.SetReadDeadline, x.spec.RequestTimeout)
	line, err := x.br.ReadSlice('\n')
	if err != nil {
		if err == io.EOF {
			return nil, errTruncated
		}
		return nil, err
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, errBadChunk
	}
	return line[:len(line)-2], nil
}

func (x *exchange) readChunkSize() (int64, error) {
	line, err := x.readLine()
	if err != nil {
		return 0, err
	}
	var n int64
	digits := 0
	for _, c := range line {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		case c == ';' || c == ' ' || c == '\t':
			// chunk extensions are ignored
			if digits == 0 {
				return 0, errBadChunk
			}
			return n, nil
		default:
			return 0, errBadChunk
		}
		if digits == 15 {
			return 0, errBadChunk
		}
		n = n<<4 | int64(d)
		digits++
	}
	if digits == 0 {
		return 0, errBadChunk
	}
	return n, nil
}

func (x *exchange) readCRLF() error {
	line, err := x.readLine()
	if err != nil {
		return err
	}
	if len(line) != 0 {
		return errBadChunk
	}
	return nil
}

func (x *exchange) readTrailers() error {
	for {
		line, err := x.readLine()
		if err != nil {
			return err
		}
		if len(line) == 0 {
			return nil
		}
		x.addTrailer(line)
	}
}

// addTrailer keeps a trailer field of the backend's chunked response in the
// response header's trailers: fasthttp writes them after the last chunk to
// an HTTP/1.1 client, and h2.go sends them as HTTP/2 trailers. Only fields
// that may be trailers pass: fasthttp refuses framing, routing,
// authentication, Content-* and the like (RFC 9110 §6.5.1), and a field the
// head already carries, a repeat (the first value is kept), Set-Cookie, a
// hop-by-hop field or a value with a control character is dropped. The
// backend's Trailer header is not forwarded in the head: a trailer it
// announced may never come, and clients read unannounced ones.
func (x *exchange) addTrailer(line []byte) {
	if name, value, ok := splitHeader(line); ok {
		x.addTrailerField(name, value)
	}
}

// addTrailerField keeps one trailer field, by addTrailer's rules (and
// those of an h2c app's HTTP/2 trailers).
func (x *exchange) addTrailerField(name, value []byte) {
	if responseHopHeader(name) || equalFoldASCII(name, "set-cookie") || !validFieldValue(value) {
		return
	}
	rh := &x.ctx.Response.Header
	if rh.PeekBytes(name) != nil || rh.AddTrailerBytes(name) != nil {
		return
	}
	rh.AddBytesKV(name, value)
}

// validFieldValue reports a field value without control characters other
// than HTAB (RFC 9110 §5.5).
func validFieldValue(v []byte) bool {
	for _, c := range v {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// abortClient handles a backend failure after the response head was sent:
// the client connection is reset, never closed as if the body were complete
// (ancm-spec.md §2.7).
func (x *exchange) abortClient(err error) error {
	x.aborted = true
	x.backendOK = false
	resetConn(x.ctx.Conn())
	if x.stream != nil && x.stream.canceled() {
		x.s.log.Debug().Err(err).Str("app", x.route.name).Int("pid", x.pid).Msg("client reset the stream")
		return err
	}
	x.s.log.Warn().Err(err).Str("app", x.route.name).Int("pid", x.pid).Msg("response aborted")
	return err
}

// CloseWithError is called by fasthttp once the response was written (or
// failed); it ends the exchange.
func (x *exchange) CloseWithError(err error) error {
	if err != nil || !x.bodyEnd {
		x.aborted = true
		x.backendOK = false
	}
	x.finish()
	return nil
}

// The response head: what the backend's head becomes for the client (the
// header rules, the framing of the body that follows, a WebSocket upgrade,
// a close-delimited body for an HTTP/1.0 client).

package fastpath

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"net"

	"github.com/valyala/fasthttp"
)

var strHTTP11 = []byte("HTTP/1.1")

// connStater is a client connection that knows its TLS state: *tls.Conn,
// and the HTTP/2 stream's stand-in (h2Conn).
type connStater interface {
	ConnectionState() tls.ConnectionState
}

// respond answers with the backend's final response head, read into
// ctx.Response.Header. It returns true when the answer is complete (no
// body) and false when the body streams through WriteTo (relay.go), a
// close-delimited writer or a WebSocket tunnel.
func (x *exchange) respond() bool {
	ctx := x.ctx
	rh := &ctx.Response.Header
	x.status = rh.StatusCode()
	if x.status == fasthttp.StatusSwitchingProtocols {
		if !x.ri.websocket {
			x.stopPump()
			x.dropConn()
			rh.Reset()
			return x.fail(stageBadResponse, errBadSwitch)
		}
		return x.startTunnel()
	}
	if x.ri.websocket {
		x.backendOK = false // it was asked to upgrade; do not reuse it
	}
	x.awaitPump()
	backendClose := rh.ConnectionClose()
	filterResponseHead(rh, x.spec.ForwardResponseConnectionHeader, &x.fields)
	if !x.consumed {
		rh.SetConnectionClose()
	}
	x.backendOK = x.backendOK && !backendClose && x.pumpErr == nil
	x.armSend()

	if h := &ctx.Request.Header; h.IsHead() || x.status == fasthttp.StatusNoContent || x.status == fasthttp.StatusNotModified {
		x.kind, x.bodyEnd = bodyNone, true
		return true
	}
	size := rh.ContentLength()
	switch {
	case size >= 0:
		x.kind, x.remaining = bodyFixed, int64(size)
		x.bodyEnd = size == 0
	case size == -1:
		x.kind = bodyChunked
	default:
		x.kind, size = bodyUntilClose, -1
		x.backendOK = false
	}
	x.bulkBody(size)
	if size < 0 && !ctx.Request.Header.IsHTTP11() {
		return x.startCloseDelimited()
	}
	ctx.Response.SetBodyStream(x, size)
	return false
}

// startCloseDelimited answers an HTTP/1.0 client whose response has no
// length up front. Such a client cannot take chunked framing (which fasthttp
// would use), so the head and body are written past fasthttp on the
// hijacked connection, and closing it ends the body.
func (x *exchange) startCloseDelimited() bool {
	rh := &x.ctx.Response.Header
	rh.Del(fasthttp.HeaderTransferEncoding)
	rh.SetContentLength(-2) // no framing header; Connection: close
	x.head = rh.AppendBytes(x.head[:0])
	x.ctx.HijackSetNoResponse(true)
	x.ctx.Hijack(x.closeDelimited)
	return false
}

func (x *exchange) closeDelimited(client net.Conn) {
	defer x.finish()
	x.armSend() // fasthttp unset the deadlines before the hijack
	bw := bufio.NewWriterSize(client, 16<<10)
	_, err := bw.Write(x.head)
	if err == nil {
		_, err = x.WriteTo(bw)
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil || !x.bodyEnd {
		x.aborted = true
		x.backendOK = false
	}
}

// armSend bounds the client's writes of the response by the send timeout.
// An accepted connection's writes carry it (sockio.ClientConn.SetWriteTimeout),
// under TLS too: crypto/tls writes each record with one Write of the
// connection under it, which reads the clock only when it has to wait. An
// HTTP/2 stream gets a deadline, renewed by WriteTo before each write but
// the first.
func (x *exchange) armSend() {
	cc := x.ctx.Conn()
	if tc := tracked(cc); tc != nil {
		_ = tc.SetWriteTimeout(x.s.cfg.SendTimeout)
		x.sendTimed = true
		return
	}
	setDeadline(cc.SetWriteDeadline, x.s.cfg.SendTimeout)
	x.sendArmed = true
}

// filterResponseHead applies the response header rules (ancm-spec.md §2.6):
// the backend's status code and reason phrase stay; Date is loopgate's;
// Connection is dropped unless forwardResponseConnectionHeader=true;
// Keep-Alive and Proxy-Connection are hop-by-hop; the Trailer announcement
// is dropped (the trailers themselves follow the body, see addTrailer);
// a Server header appears only if the backend sent one; repeated headers
// (Set-Cookie and the others) all stay, in the order the backend sent
// them. Framing headers are set by fasthttp from the body the client gets.
//
// The backend's Date stays in rh: fasthttp writes its own Date and leaves
// out any other (ResponseHeader.AppendBytes), and copyResponseHead skips
// it for HTTP/2 clients. Deleting it would reorder the fields after it
// (dropHopFields).
func filterResponseHead(rh *fasthttp.ResponseHeader, forwardConnection bool, scratch *fieldScratch) {
	if string(rh.Protocol()) != "HTTP/1.1" {
		rh.SetProtocol(strHTTP11)
	}
	// The announcement is kept apart from the other fields (fasthttp
	// parses and adds it into its trailer list, never among them):
	// deleting it moves none of them, and without one there is nothing
	// to delete.
	if len(rh.PeekTrailerKeys()) > 0 {
		rh.Del(fasthttp.HeaderTrailer)
	}
	dropHopFields(rh, forwardConnection, scratch)
}

// hopField reports a hop-by-hop field of a response: Keep-Alive,
// Proxy-Connection, and Connection unless it is forwarded
// (forwardResponseConnectionHeader=true). A string switch: names rh read
// normalized are compared as they are, without a copy.
func hopField(name []byte, forwardConnection bool) bool {
	switch string(name) {
	case fasthttp.HeaderKeepAlive, "Proxy-Connection":
		return true
	case fasthttp.HeaderConnection:
		return !forwardConnection
	}
	return false
}

// fieldScratch holds a response head's fields while dropHopFields rebuilds
// them; an exchange keeps one so that a rebuild allocates nothing.
type fieldScratch struct {
	buf    []byte
	fields []fieldSpan // where each field lies in buf
}

// fieldSpan is a field in fieldScratch.buf: its name is buf[start:nameEnd],
// its value buf[nameEnd:end].
type fieldSpan struct{ start, nameEnd, end int }

// add appends a field.
func (f *fieldScratch) add(name, value []byte) {
	start := len(f.buf)
	f.buf = append(f.buf, name...)
	nameEnd := len(f.buf)
	f.buf = append(f.buf, value...)
	f.fields = append(f.fields, fieldSpan{start, nameEnd, len(f.buf)})
}

// name is the name of field i.
func (f *fieldScratch) name(i int) []byte {
	sp := &f.fields[i]
	return f.buf[sp.start:sp.nameEnd]
}

// value is the value of field i.
func (f *fieldScratch) value(i int) []byte {
	sp := &f.fields[i]
	return f.buf[sp.nameEnd:sp.end]
}

// dropHopFields deletes the hop-by-hop fields (hopField) from rh and keeps
// the others in their order. fasthttp's Del moves the head's last field
// into the place of the one it deletes, which, when the last two fields
// share a name, reverses them (RFC 9110 §5.3: the order of same-name
// fields is significant, e.g. WWW-Authenticate's preference, or Link). So
// when one is there, the ordinary fields from it on are copied out in
// order, deleted and added back without it; a head without one (the usual
// case) is left as it is after one pass over it. The fields before the
// first hop-by-hop one stay where they are, unless one of them shares its
// name with a field after it (deleting the later one would delete it too):
// then the copy starts at that one. Node puts Connection and Keep-Alive
// last, so only they are deleted.
//
// rh was read with its names normalized (readHead), so the canonical names
// match them as they are; normalizing is off meanwhile, because Del would
// otherwise normalize each name again (about 5 % of loopgate's
// instructions per small GET).
func dropHopFields(rh *fasthttp.ResponseHeader, forwardConnection bool, scratch *fieldScratch) {
	present := false
	for k, v := range rh.All() {
		if hopField(k, forwardConnection) && !closeFlag(k, v) {
			present = true
			break
		}
	}
	if !present {
		if !forwardConnection {
			rh.ResetConnectionClose()
		}
		return
	}
	keepClose := rh.ConnectionClose() && forwardConnection
	rh.DisableNormalizing()
	defer rh.EnableNormalizing() // for the trailers added later (addTrailerField)
	scratch.buf, scratch.fields = scratch.buf[:0], scratch.fields[:0]
	from := -1 // the first hop-by-hop field
	for k, v := range rh.All() {
		if specialResponseField(k) || closeFlag(k, v) {
			continue // not among the ordinary fields
		}
		if from < 0 && hopField(k, forwardConnection) {
			from = len(scratch.fields)
		}
		scratch.add(k, v)
	}
	// Move from back to the first field sharing its name with a field at
	// or after from; the fields it takes in are checked in turn, as the
	// loop goes down to them.
	for j := len(scratch.fields) - 1; j >= from; j-- {
		for i := 0; i < from; i++ {
			if string(scratch.name(i)) == string(scratch.name(j)) {
				from = i
				break
			}
		}
	}
	for i := from; i < len(scratch.fields); i++ {
		rh.DelBytes(scratch.name(i))
	}
	for i := from; i < len(scratch.fields); i++ {
		if name := scratch.name(i); !hopField(name, forwardConnection) {
			rh.AddBytesKV(name, scratch.value(i))
		}
	}
	if keepClose {
		rh.SetConnectionClose()
	} else {
		rh.ResetConnectionClose()
	}
}

// closeFlag reports the Connection: close that All yields for the close
// flag: fasthttp keeps a Connection: close apart from the ordinary fields,
// and any other Connection value among them.
func closeFlag(name, value []byte) bool {
	return string(name) == fasthttp.HeaderConnection && string(value) == "close"
}

// specialResponseField reports the fields fasthttp's ResponseHeader keeps
// apart from the ordinary ones (All yields them first), which Del and Add
// of other names leave where they are.
func specialResponseField(name []byte) bool {
	switch string(name) {
	case fasthttp.HeaderContentLength, fasthttp.HeaderContentType, fasthttp.HeaderContentEncoding,
		fasthttp.HeaderServer, fasthttp.HeaderSetCookie, fasthttp.HeaderTrailer:
		return true
	}
	return false
}

// hiddenTrailerName replaces the name "Trailer" (same length, a valid
// token no app sends) in a response head fasthttp refused for it.
const hiddenTrailerName = "!railer"

// hideTrailerAnnouncement renames the Trailer fields of the response head
// buffered at the front of br, and reports whether there was one. It runs
// only after fasthttp parsed that whole head and refused it, so the head
// is in the buffer, where Peek lets it be changed before it is read again.
func hideTrailerAnnouncement(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	hidden := false
	for {
		i := bytes.IndexByte(b, '\n')
		if i <= 1 { // no line, or the empty line that ends the head
			return hidden
		}
		if line := b[:i]; len(line) > len(hiddenTrailerName) && line[len(hiddenTrailerName)] == ':' &&
			equalFoldASCII(line[:len(hiddenTrailerName)], fasthttp.HeaderTrailer) {
			copy(line, hiddenTrailerName)
			hidden = true
		}
		b = b[i+1:]
	}
}

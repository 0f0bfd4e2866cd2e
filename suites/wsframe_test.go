package suites

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"
)

// The WebSocket client here is a frame-level one written for the tests:
// it sends exactly the frames a case lists, valid or not, and records
// exactly the frames it receives, so a tunnel that changed, merged, split
// or dropped a frame shows up in the comparison with the direct run.

// Opcodes (RFC 6455 §5.2).
const (
	opCont   = 0x0
	opText   = 0x1
	opBinary = 0x2
	opClose  = 0x8
	opPing   = 0x9
	opPong   = 0xa
)

// frame is one WebSocket frame as it was on the wire (unmasked payload).
type frame struct {
	fin     bool
	rsv     byte // the three RSV bits, in the low bits
	op      byte
	payload []byte
	// unmasked sends the frame without a mask (a protocol error from a
	// client); only used when writing.
	unmasked bool
}

func (f frame) String() string {
	p := f.payload
	if len(p) > 32 {
		return fmt.Sprintf("{fin:%v rsv:%d op:%#x len:%d}", f.fin, f.rsv, f.op, len(p))
	}
	return fmt.Sprintf("{fin:%v rsv:%d op:%#x %q}", f.fin, f.rsv, f.op, p)
}

func text(s string) frame     { return frame{fin: true, op: opText, payload: []byte(s)} }
func binFrame(b []byte) frame { return frame{fin: true, op: opBinary, payload: b} }
func closeFrame(code int, reason string) frame {
	p := binary.BigEndian.AppendUint16(nil, uint16(code))
	return frame{fin: true, op: opClose, payload: append(p, reason...)}
}

// closeCode returns a close frame's status code, or 0.
func (f frame) closeCode() int {
	if f.op != opClose || len(f.payload) < 2 {
		return 0
	}
	return int(binary.BigEndian.Uint16(f.payload))
}

var maskKey = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// appendFrame encodes f as a client sends it (masked unless f.unmasked).
func appendFrame(b []byte, f frame) []byte {
	b0 := f.op | f.rsv<<4
	if f.fin {
		b0 |= 0x80
	}
	b = append(b, b0)
	var m byte
	if !f.unmasked {
		m = 0x80
	}
	switch n := len(f.payload); {
	case n < 126:
		b = append(b, m|byte(n))
	case n <= 0xffff:
		b = append(b, m|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, m|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if f.unmasked {
		return append(b, f.payload...)
	}
	b = append(b, maskKey[:]...)
	for i, c := range f.payload {
		b = append(b, c^maskKey[i&3])
	}
	return b
}

// readFrame reads one frame as a server sends it (unmasked).
func readFrame(r *bufio.Reader) (frame, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return frame{}, err
	}
	f := frame{fin: h[0]&0x80 != 0, rsv: h[0] >> 4 & 7, op: h[0] & 0xf}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var e [2]byte
		if _, err := io.ReadFull(r, e[:]); err != nil {
			return frame{}, err
		}
		n = uint64(binary.BigEndian.Uint16(e[:]))
	case 127:
		var e [8]byte
		if _, err := io.ReadFull(r, e[:]); err != nil {
			return frame{}, err
		}
		n = binary.BigEndian.Uint64(e[:])
	}
	if h[1]&0x80 != 0 {
		return frame{}, errors.New("masked frame from a server")
	}
	if n > 64<<20 {
		return frame{}, fmt.Errorf("frame of %d bytes", n)
	}
	f.payload = make([]byte, n)
	_, err := io.ReadFull(r, f.payload)
	return f, err
}

// wsConn is one client connection after a successful upgrade.
type wsConn struct {
	c   net.Conn     // the stream: raw, or TLS over it
	raw *net.TCPConn // the TCP connection
	br  *bufio.Reader
}

// closeWrite ends the client's stream and keeps reading: TLS close_notify
// (over TLS), then FIN.
func (w *wsConn) closeWrite() {
	if tc, ok := w.c.(*tls.Conn); ok {
		_ = tc.CloseWrite()
	}
	_ = w.raw.CloseWrite()
}

// reset closes the connection with RST.
func (w *wsConn) reset() {
	_ = w.raw.SetLinger(0)
	_ = w.raw.Close()
}

// dialWS upgrades a new connection to addr at path, over TLS (HTTP/1.1 by
// ALPN, the certificate not verified) when useTLS, with every I/O bounded
// by 30 s.
func dialWS(addr, path string, useTLS bool) (*wsConn, error) {
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	_ = raw.SetDeadline(time.Now().Add(30 * time.Second))
	c := raw
	if useTLS {
		c = tls.Client(raw, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	}
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		c.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(c, 64<<10)
	resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	if err != nil {
		c.Close()
		return nil, err
	}
	if resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		c.Close()
		return nil, fmt.Errorf("upgrade answered %s, accept %q", resp.Status, resp.Header.Get("Sec-WebSocket-Accept"))
	}
	return &wsConn{c: c, raw: raw.(*net.TCPConn), br: br}, nil
}

func (w *wsConn) send(fs ...frame) error {
	var b []byte
	for _, f := range fs {
		b = appendFrame(b, f)
	}
	_, err := w.c.Write(b)
	return err
}

// end is how a connection ended, seen from the reader.
type end string

const (
	endEOF     end = "eof"
	endReset   end = "reset"
	endTimeout end = "still open"
)

func endOf(err error) end {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return endEOF
	case errors.Is(err, syscall.ECONNRESET):
		return endReset
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, os.ErrDeadlineExceeded):
		return endTimeout
	}
	return end("error: " + err.Error())
}

// readUntilEnd reads frames until the connection ends or d passes and
// returns them with how it ended and when (since the call).
func (w *wsConn) readUntilEnd(d time.Duration) ([]frame, end, time.Duration) {
	start := time.Now()
	_ = w.c.SetReadDeadline(start.Add(d))
	var got []frame
	for {
		f, err := readFrame(w.br)
		if err != nil {
			return got, endOf(err), time.Since(start)
		}
		got = append(got, f)
	}
}

// readFrames reads n frames (bounded by d).
func (w *wsConn) readFrames(n int, d time.Duration) ([]frame, error) {
	_ = w.c.SetReadDeadline(time.Now().Add(d))
	var got []frame
	for range n {
		f, err := readFrame(w.br)
		if err != nil {
			return got, err
		}
		got = append(got, f)
	}
	return got, nil
}

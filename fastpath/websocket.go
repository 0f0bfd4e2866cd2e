package fastpath

import (
	"net"
	"sync"
)

// bufPool holds the 32 KiB buffers of body pumps and WebSocket tunnels.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// startTunnel takes over the client connection after the backend accepted a
// WebSocket upgrade with 101. The 101 head goes to the client as the backend
// sent it (with loopgate's Date), then bytes are relayed both ways until
// either side closes. The relay copies through buffers and never splices: a
// loopback socket may be in the eBPF sockmap, which must not be read with
// splice(2) (DESIGN.md §5).
func (x *exchange) startTunnel() bool {
	x.upgraded = true
	x.backendOK = false
	rh := &x.ctx.Response.Header
	rh.SetProtocol(strHTTP11)
	rh.Del("Date")
	x.head = rh.AppendBytes(x.head[:0])
	x.ctx.HijackSetNoResponse(true)
	x.ctx.Hijack(x.tunnel)
	return false
}

// tunnel runs on fasthttp's hijack goroutine with the client connection (its
// reads start with anything the client already sent after the request).
func (x *exchange) tunnel(client net.Conn) {
	s := x.s
	s.addTunnel(x, client)
	defer func() {
		s.removeTunnel(x)
		x.finish()
	}()
	if _, err := client.Write(x.head); err != nil {
		x.aborted = true
		return
	}
	done := make(chan int64, 1)
	go func() {
		// backend → client, starting with what the head read buffered.
		n := relay(client, x.br)
		_ = client.Close()
		_ = x.conn.Close()
		done <- n
	}()
	x.bytesIn = relay(x.conn, client)
	_ = client.Close()
	_ = x.conn.Close()
	x.bytesOut = <-done
	x.bodyEnd = true
}

// relay copies src to dst through a pooled buffer until either fails, and
// returns the bytes copied.
func relay(dst net.Conn, src interface{ Read([]byte) (int, error) }) int64 {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var total int64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return total
			}
			total += int64(n)
		}
		if err != nil {
			return total
		}
	}
}

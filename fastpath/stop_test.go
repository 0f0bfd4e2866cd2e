package fastpath

import (
	"net"
	"testing"
)

// TestStopAcceptingRefusesAtOnce: once StopAccepting returns, a connect to
// any listener, plain or TLS (where HTTP/2 splits the accepted
// connections), is refused, so a service manager told STOPPING=1 after it
// sees no new connection; a connection already open is still served.
func TestStopAcceptingRefusesAtOnce(t *testing.T) {
	addr, _ := capturingBackend(t, okResponse)
	h := newHarness(t, Config{}, "/")
	h.backend("/", addr)
	open := dialRaw(t, h.addr)
	if r, _ := open.roundTrip(get("a", "/")); r.StatusCode != 200 {
		t.Fatalf("before: %d", r.StatusCode)
	}
	th := newTLSHarness(t, Config{})

	h.srv.StopAccepting()
	th.srv.StopAccepting()
	for _, a := range []string{h.addr, th.addr} {
		if c, err := net.Dial("tcp", a); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after StopAccepting returned", a)
		}
	}
	if r, _ := open.roundTrip(get("a", "/")); r.StatusCode != 200 {
		t.Errorf("the open connection after StopAccepting: %d, want it served until Shutdown", r.StatusCode)
	}
}

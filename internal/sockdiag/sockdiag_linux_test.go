package sockdiag

import (
	"net"
	"net/netip"
	"slices"
	"testing"
)

func TestListeningSeesOnlyListeners(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	want := []netip.AddrPort{netip.MustParseAddrPort(ln.Addr().String())}
	if ln6, err := net.Listen("tcp", "[::1]:0"); err == nil {
		defer ln6.Close()
		want = append(want, netip.MustParseAddrPort(ln6.Addr().String()))
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	socks, err := Listening()
	if err != nil {
		t.Fatal(err)
	}
	var got []netip.AddrPort
	for _, s := range socks {
		if s.Inode == 0 {
			t.Errorf("%v: no inode", s.Addr)
		}
		got = append(got, s.Addr)
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("Listening = %v, lacks %v", got, w)
		}
	}
	if slices.Contains(got, netip.MustParseAddrPort(c.LocalAddr().String())) {
		t.Errorf("Listening = %v holds the connected socket %v", got, c.LocalAddr())
	}
}

func TestParseMsgTruncated(t *testing.T) {
	if _, err := parseMsg(make([]byte, msgLen-1)); err != ErrTruncated {
		t.Fatalf("parseMsg(short) = %v, want ErrTruncated", err)
	}
}

func BenchmarkListening(b *testing.B) {
	for b.Loop() {
		if _, err := Listening(); err != nil {
			b.Fatal(err)
		}
	}
}

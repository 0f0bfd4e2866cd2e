package supervisor

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestListenVerdict(t *testing.T) {
	ap := netip.MustParseAddrPort
	cases := []struct {
		addrs []netip.AddrPort
		want  string // "" for no verdict
	}{
		{nil, ""},
		{[]netip.AddrPort{ap("127.0.0.1:28092")}, ""},
		{[]netip.AddrPort{ap("0.0.0.0:28092")}, ""},
		{[]netip.AddrPort{ap("[::]:28092"), ap("127.0.0.1:9229")}, ""},
		{[]netip.AddrPort{ap("127.0.0.1:5000")}, "the app listens on 127.0.0.1:5000, not on ASPNETCORE_PORT 28092: does it read ASPNETCORE_PORT?"},
		// Kestrel's default when ASPNETCORE_PORT is ignored.
		{[]netip.AddrPort{ap("127.0.0.1:5000"), ap("[::1]:5000")},
			"the app listens on 127.0.0.1:5000 and [::1]:5000, not on ASPNETCORE_PORT 28092: does it read ASPNETCORE_PORT?"},
		{[]netip.AddrPort{ap("0.0.0.0:3000"), ap("0.0.0.0:3001"), ap("[::]:3002")},
			"the app listens on 0.0.0.0:3000, 0.0.0.0:3001 and [::]:3002, not on ASPNETCORE_PORT 28092: does it read ASPNETCORE_PORT?"},
		{[]netip.AddrPort{ap("[::1]:28092"), ap("127.0.0.1:5000")},
			"the app listens on [::1]:28092, which loopgate cannot reach at 127.0.0.1:28092: it must listen on 127.0.0.1 or on all addresses"},
	}
	for _, c := range cases {
		v := listenVerdict(c.addrs, 28092)
		got := ""
		if v != nil {
			got = v.Error()
			if !errors.Is(v, ErrWrongPort) {
				t.Errorf("%v: not ErrWrongPort", c.addrs)
			}
		}
		if got != c.want {
			t.Errorf("%v:\n got %q\nwant %q", c.addrs, got, c.want)
		}
	}
}

// fakeListeners is a listenerOS that answers from a list the test changes.
type fakeListeners struct{ addrs []netip.AddrPort }

func (f *fakeListeners) Listeners(int) ([]netip.AddrPort, error) { return f.addrs, nil }

func TestWrongPortWatchWaitsForTheGrace(t *testing.T) {
	f := &fakeListeners{}
	w := &wrongPortWatch{os: f, pid: 1, port: 28092}
	t0 := time.Unix(1000, 0)
	if w.check(t0) != nil {
		t.Fatal("a verdict with no listener")
	}
	f.addrs = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9229")} // a debugger first
	if w.check(t0.Add(listenCheckEvery)) != nil || w.check(t0.Add(listenCheckEvery+wrongPortGrace/2)) != nil {
		t.Fatal("a verdict before the grace")
	}
	// Checks come no more often than listenCheckEvery.
	f.addrs = append(f.addrs, netip.MustParseAddrPort("127.0.0.1:28092"))
	if w.check(t0.Add(listenCheckEvery+wrongPortGrace/2+time.Millisecond)) != nil {
		t.Fatal("a verdict")
	}
	if w.check(t0.Add(listenCheckEvery+wrongPortGrace)) != nil || !w.since.IsZero() {
		t.Fatal("listening on the port too must clear the verdict")
	}
	f.addrs = f.addrs[:1]
	at := t0.Add(2*listenCheckEvery + wrongPortGrace)
	w.check(at)
	if err := w.check(at.Add(wrongPortGrace)); !errors.Is(err, ErrWrongPort) {
		t.Fatalf("after the grace: %v", err)
	}
}

func TestRealListenersSeesOwnSockets(t *testing.T) {
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
	// A connected socket is not a listener.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := realOS{}.Listeners(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("Listeners = %v, lacks %v", got, w)
		}
	}
	if slices.Contains(got, netip.MustParseAddrPort(c.LocalAddr().String())) {
		t.Errorf("Listeners = %v holds the connected socket %v", got, c.LocalAddr())
	}
}

func TestParseProcAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:1388":                         "127.0.0.1:5000",
		"00000000:1F90":                         "0.0.0.0:8080",
		"00000000000000000000000001000000:1388": "[::1]:5000",
		"00000000000000000000000000000000:0050": "[::]:80",
		"0000000000000000FFFF00000100007F:1388": "127.0.0.1:5000", // v4-mapped
	} {
		got, ok := parseProcAddr(in)
		if !ok || got.String() != want {
			t.Errorf("parseProcAddr(%q) = %v %v, want %s", in, got, ok, want)
		}
	}
	if ppid, ok := statPPID([]byte("42 (a) b) (c) S 7 42 42 0")); !ok || ppid != 7 {
		t.Errorf("statPPID: %d %v", ppid, ok)
	}
}

var wrongPortText = regexp.MustCompile(`^the app listens on 127\.0\.0\.1:(\d+), not on ASPNETCORE_PORT (\d+): does it read ASPNETCORE_PORT\?$`)

// TestRealWrongPortFailsAtOnce: a backend that listens on a port of its own
// choosing fails its start within a few seconds, not after two
// startupTimeLimits, with a message that says where it listens, once (no
// second attempt), and with its output in the log line.
func TestRealWrongPortFailsAtOnce(t *testing.T) {
	spec := realSpec(t, "TB_PRINT=Now listening on: http://localhost:5000")
	spec.Arguments = []string{"-port", "0"} // the kernel picks: never ASPNETCORE_PORT
	spec.StartupTimeLimit = 60 * time.Second
	s, logs := realSup(t, spec)
	a := s.Apps()[0]
	start := time.Now()
	if p, o := acquireReal(t, a); o != StartFailed || p != nil {
		t.Fatalf("Acquire: %v", o)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the start took %v to fail", d)
	}
	st := a.Status()
	m := wrongPortText.FindStringSubmatch(st.LastStartError)
	if m == nil {
		t.Fatalf("last start error %q", st.LastStartError)
	}
	if m[1] == m[2] {
		t.Errorf("the ports are the same: %q", st.LastStartError)
	}
	containsAll(t, "log", logs.String(), `"event":"start_failed"`, `"attempts":1`,
		`"error":"`+st.LastStartError, `out: Now listening on: http://localhost:5000`)
	if n := len(startPID.FindAllString(logs.String(), -1)); n != 1 {
		t.Errorf("%d starts, want 1 (retrying cannot help)", n)
	}
}

// TestRealExitStatusFirst: a process that exits at once is reported with
// its exit status first.
func TestRealExitStatusFirst(t *testing.T) {
	spec := realSpec(t, "TB_NO_LISTEN=1", "TB_EXIT_AFTER=1ms", "TB_EXIT_CODE=7")
	s, _ := realSup(t, spec)
	a := s.Apps()[0]
	if _, o := acquireReal(t, a); o != StartFailed {
		t.Fatalf("Acquire: %v", o)
	}
	got := a.Status().LastStartError
	if !strings.HasPrefix(got, "exit status 7: the process exited before listening on ASPNETCORE_PORT ") {
		t.Errorf("last start error %q", got)
	}
	if _, err := strconv.Atoi(got[strings.LastIndexByte(got, ' ')+1:]); err != nil {
		t.Errorf("last start error %q does not end with the port", got)
	}
}

// BenchmarkRealListeners is the cost of one look at a process tree's
// listeners, which a start that has not listened yet takes every
// listenCheckEvery on the CPU its app is starting on.
func BenchmarkRealListeners(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	for b.Loop() {
		if _, err := (realOS{}).Listeners(os.Getpid()); err != nil {
			b.Fatal(err)
		}
	}
}

// TestProcessTreeFindsDescendants: a shell's children and grandchildren
// are found through the children files as through the parent PIDs of all
// processes.
func TestProcessTreeFindsDescendants(t *testing.T) {
	cmd := exec.Command("sh", "-c", `sh -c "sleep 30 & wait" & sleep 30 & wait`)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	}()
	var tree []int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if tree = processTree(cmd.Process.Pid); len(tree) == 4 {
			break
		}
	}
	// sh, its sleep, the inner sh and its sleep.
	if len(tree) != 4 || tree[0] != cmd.Process.Pid {
		t.Fatalf("processTree = %v, want the shell and 3 descendants", tree)
	}
	all := allProcessTree(cmd.Process.Pid)
	slices.Sort(all)
	slices.Sort(tree)
	if !slices.Equal(all, tree) {
		t.Fatalf("processTree = %v, allProcessTree = %v", tree, all)
	}
}

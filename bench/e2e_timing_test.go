package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loopgate/loopgate/bench/internal/harness"
	"github.com/loopgate/loopgate/bpf/bpftest"
)

// The binaries are built on first use by a benchmark, never in TestMain:
// `go test ./...` without -bench runs nothing here and stays fast.
var (
	buildOnce sync.Once
	bins      harness.Binaries
	buildErr  error
	tmpRoot   string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if tmpRoot != "" {
		os.RemoveAll(tmpRoot)
	}
	os.Exit(code)
}

func binaries(tb testing.TB) harness.Binaries {
	tb.Helper()
	buildOnce.Do(func() {
		if tmpRoot, buildErr = os.MkdirTemp("", "loopgate-bench-"); buildErr != nil {
			return
		}
		bins, buildErr = harness.Build(tmpRoot)
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return bins
}

// benchToken is the backend's pairing token. The backend runs with
// -pairing=on (pairing/fastpairing checks it), on every path: the direct
// client sends the token and the X-Forwarded-* headers loopgate would add,
// so the backend does the same work per request on every path and the
// difference between paths is what loopgate costs.
const benchToken = "0f8fad5b-d9cb-469f-a165-70867728950e"

// target is one way to reach the backend.
type target struct {
	addr       string
	req        map[string][]byte // per request target
	loopgate   *harness.Loopgate // nil for path=direct
	backendPID int
}

func (t *target) pids() []int {
	if t.loopgate == nil {
		return []int{t.backendPID}
	}
	return []int{t.loopgate.PID(), t.backendPID}
}

type body struct {
	name, path string
	size       int
}

var bodies = []body{{"13B", "/", 13}, {"16KiB", "/16k", 16 << 10}}

// startTarget starts what path needs, with the server side pinned to
// serverCPU; cleanup registers what stops it.
func startTarget(path string, serverCPU int, dir string, cleanup func(func())) (*target, error) {
	t := &target{req: map[string][]byte{}}
	if path == "direct" {
		p, err := harness.StartBackend(bins.Backend, "on", benchToken, serverCPU)
		if err != nil {
			return nil, err
		}
		cleanup(p.Stop)
		t.addr, t.backendPID = p.Addr, p.PID()
		for _, b := range bodies {
			t.req[b.path] = harness.GET("bench.example", b.path, "MS-ASPNETCORE-TOKEN: "+benchToken,
				"X-Forwarded-For: 127.0.0.1:50000", "X-Forwarded-Proto: http")
		}
		return t, nil
	}
	accel := map[string]string{"tcp": "off", "sockmap": "on"}[path]
	app := filepath.Join(dir, path)
	if err := harness.WriteApp(app, bins.Backend, "-pairing=on"); err != nil {
		return nil, err
	}
	lg, err := harness.StartLoopgate(bins.Loopgate, app, accel, serverCPU)
	if err != nil {
		return nil, err
	}
	cleanup(lg.Stop)
	t.addr, t.loopgate = lg.Addr, lg
	for _, b := range bodies {
		t.req[b.path] = harness.GET("bench.example", b.path)
	}
	if err := harness.Warm(t.addr, t.req["/"], 13); err != nil {
		return nil, fmt.Errorf("%w\n%s", err, lg.Log())
	}
	if t.backendPID, err = lg.BackendPID(); err != nil {
		return nil, err
	}
	return t, nil
}

// BenchmarkEndToEnd measures a GET of a 13-byte and a 16 KiB body from a
// fasthttp backend (bench/internal/backend) hit directly, through loopgate
// over loopback TCP (--accel off) and through loopgate with the eBPF
// sockmap fast path (--accel on; skipped without root or kernel support),
// at one connection (latency) and 32 (throughput). The server side
// (loopgate and backend) is pinned to CPU 0 and the client to CPU 1 when
// the machine has both. Besides ns/op (wall time per request across all
// connections: 1e9/ns = requests/s) it reports the p50 and p99 latency,
// and the CPU time per request of loopgate and of the whole server side
// (loopgate plus backend) from /proc/PID/stat, which has 10 ms resolution:
// use -benchtime=3s or more for those. Compare paths with
//
//	go test -run '^$' -bench EndToEnd -benchtime 3s -count 6 ./bench/ > e2e.txt
//	benchstat -col /path e2e.txt
func BenchmarkEndToEnd(b *testing.B) {
	binaries(b)
	top, dir := b, b.TempDir()
	serverCPU := -1
	if harness.CanPin() {
		restore, err := harness.PinSelf(1)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(restore)
		serverCPU = 0
	}
	targets := map[string]*target{}
	for _, bd := range bodies {
		for _, conns := range []int{1, 32} {
			for _, path := range []string{"direct", "tcp", "sockmap"} {
				b.Run(fmt.Sprintf("body=%s/conns=%d/path=%s", bd.name, conns, path), func(b *testing.B) {
					if path == "sockmap" {
						bpftest.Require(b)
					}
					t := targets[path]
					if t == nil {
						var err error
						if t, err = startTarget(path, serverCPU, dir, top.Cleanup); err != nil {
							b.Fatal(err)
						}
						targets[path] = t
					}
					runE2E(b, t, bd, conns)
				})
			}
		}
	}
}

// runE2E sends b.N requests over conns connections, each sending the next
// request when the previous answer is complete, and reports latency and
// server-side CPU per request.
func runE2E(b *testing.B, t *target, bd body, conns int) {
	req := t.req[bd.path]
	cs := make([]*harness.Conn, conns)
	for i := range cs {
		c, err := harness.Dial(t.addr, req, bd.size)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		cs[i] = c
	}
	for _, c := range cs { // each connection's first request is not timed
		if err := c.Do(); err != nil {
			b.Fatal(err)
		}
	}
	var redirected uint64
	if t.loopgate != nil {
		s, err := t.loopgate.Status()
		if err != nil {
			b.Fatal(err)
		}
		redirected = s.Acceleration.Redirected
	}
	lgCPU0, err := harness.CPUTime(t.pids()[0])
	if err != nil {
		b.Fatal(err)
	}
	cpu0, err := harness.TotalCPU(t.pids()...)
	if err != nil {
		b.Fatal(err)
	}

	var (
		lat     harness.Latencies
		next    atomic.Int64
		failed  atomic.Pointer[error]
		wg      sync.WaitGroup
		perConn = b.N/conns + 1
	)
	b.ResetTimer()
	for _, c := range cs {
		wg.Go(func() {
			d := make([]time.Duration, 0, perConn)
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				if err := c.Do(); err != nil {
					failed.CompareAndSwap(nil, &err)
					next.Store(int64(b.N)) // stop every connection
					break
				}
				d = append(d, time.Since(t0))
			}
			lat.Merge(d)
		})
	}
	wg.Wait()
	b.StopTimer()
	if p := failed.Load(); p != nil {
		b.Fatal(*p)
	}

	cpu1, err := harness.TotalCPU(t.pids()...)
	if err != nil {
		b.Fatal(err)
	}
	lgCPU1, _ := harness.CPUTime(t.pids()[0])
	n := float64(lat.Len())
	b.ReportMetric(float64(lat.Percentile(0.50))/1e3, "p50-µs")
	b.ReportMetric(float64(lat.Percentile(0.99))/1e3, "p99-µs")
	b.ReportMetric(float64(cpu1-cpu0)/1e3/n, "server-cpu-µs/op")
	if t.loopgate != nil {
		b.ReportMetric(float64(lgCPU1-lgCPU0)/1e3/n, "loopgate-cpu-µs/op")
		s, err := t.loopgate.Status()
		if err != nil {
			b.Fatal(err)
		}
		if accel := s.Acceleration; accel.Active && accel.Redirected == redirected {
			b.Fatalf("sockmap active but nothing redirected: %+v", accel)
		} else if !accel.Active && accel.Mode == "on" {
			b.Fatalf("--accel on but not active: %s", accel.Reason)
		}
	}
}

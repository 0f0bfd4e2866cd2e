// Command grpccompare measures unary gRPC calls through loopgate
// (backendProtocol="h2c") against the same app called directly with
// grpc-go and through nginx's grpc_pass (`make bench-grpc`).
//
// The app is examples/grpc (grpc-go behind the pairing middleware, h2c)
// with the same environment in every row: loopgate starts its own from a
// web.config; the direct and nginx rows get one started here with an
// ASPNETCORE_TOKEN, which the direct client sends itself (with the two
// X-Forwarded-* headers) and nginx sets, so the app does the same work on
// every row. loopgate and nginx (one worker, upstream keep-alive, no access
// log) listen with TLS and HTTP/2; the direct row is h2c, without TLS: it
// is the floor, not a peer. The server side is pinned to CPU 0, this
// program (the grpc-go client) to CPU 1.
//
// Targets are measured interleaved, each repetition in a rotated order; per
// target the median over the repetitions is reported: calls/s at
// saturation (-c concurrent callers on one client connection, closed loop)
// with p50/p99 latency there, and p50/p99 with one caller. The report
// gives ratios to nginx and to direct; absolutes on a shared 2-core
// machine mean little.
//
// Usage:
//
//	go run ./bench/cmd/grpccompare [-reps 3] [-d 5s] [-c 16] [-out bench/results/grpc-latest.md]
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/loopgate/loopgate/bench/internal/harness"
	"github.com/loopgate/loopgate/internal/gobuild"
)

const token = "grpccompare-token"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "grpccompare:", err)
		os.Exit(1)
	}
}

// target is one row: how to reach the app.
type target struct {
	name string
	addr string
	tls  bool
	md   metadata.MD // what the client sends besides the call (direct: the token and forwarded headers)
	cc   *grpc.ClientConn
}

// sample is one measured run.
type sample struct {
	rps      float64
	p50, p99 time.Duration // at saturation
	l50, l99 time.Duration // one caller
}

func run() error {
	reps := flag.Int("reps", 3, "repetitions (interleaved)")
	dur := flag.Duration("d", 5*time.Second, "measuring time per saturation run (the one-caller run takes half)")
	conc := flag.Int("c", 16, "concurrent callers at saturation")
	out := flag.String("out", "bench/results/grpc-latest.md", "Markdown report")
	flag.Parse()

	tmp, err := os.MkdirTemp("", "grpccompare-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintln(os.Stderr, "grpccompare: building loopgate and examples/grpc")
	lgBin, appBin := filepath.Join(tmp, "loopgate"), filepath.Join(tmp, "grpc")
	if err := gobuild.Build(lgBin, "github.com/loopgate/loopgate/cmd/loopgate"); err != nil {
		return err
	}
	if err := gobuild.Build(appBin, "github.com/loopgate/loopgate/examples/grpc"); err != nil {
		return err
	}
	if err := harness.WriteCert(tmp); err != nil {
		return err
	}
	serverCPU := -1
	if harness.CanPin() {
		serverCPU = 0
		restore, err := harness.PinSelf(1)
		if err != nil {
			return err
		}
		defer restore()
	} else {
		fmt.Fprintln(os.Stderr, "grpccompare: CPUs 0 and 1 are not both available: not pinning")
	}

	// loopgate, hosting the app from a web.config with backendProtocol=h2c.
	appDir := filepath.Join(tmp, "app")
	if err := os.MkdirAll(appDir, 0o755); err != nil {
		return err
	}
	wc := `<?xml version="1.0" encoding="utf-8"?>
<configuration><system.webServer>
  <aspNetCore processPath="` + appBin + `" stdoutLogEnabled="false" hostingModel="outofprocess">
    <handlerSettings><handlerSetting name="backendProtocol" value="h2c" /></handlerSettings>
  </aspNetCore>
</system.webServer></configuration>
`
	if err := os.WriteFile(filepath.Join(appDir, "web.config"), []byte(wc), 0o644); err != nil {
		return err
	}
	lport, err := harness.FreePort()
	if err != nil {
		return err
	}
	laddr := "127.0.0.1:" + strconv.Itoa(lport)
	lg := exec.Command(lgBin, "serve", "--tls-listen", laddr, "--tls-cert", filepath.Join(tmp, "cert.pem"),
		"--tls-key", filepath.Join(tmp, "key.pem"), "--admin", "", "--access-log=false", appDir)
	var lgLog strings.Builder
	lg.Stdout, lg.Stderr = &lgLog, &lgLog
	lg.WaitDelay = 10 * time.Second
	if err := harness.StartPinned(lg, serverCPU); err != nil {
		return err
	}
	defer harness.StopCmd(lg) // SIGTERM: loopgate stops its app
	if err := harness.WaitListening(laddr, 15*time.Second); err != nil {
		return fmt.Errorf("loopgate: %w\n%s", err, lgLog.String())
	}

	// The app for the direct and nginx rows.
	app, err := startApp(appBin, serverCPU)
	if err != nil {
		return err
	}
	defer app.Stop()
	ng, err := harness.StartNginxGRPC(tmp, app.Addr, token, serverCPU)
	if err != nil {
		return fmt.Errorf("nginx: %w", err)
	}
	defer ng.Stop()

	targets := []*target{
		{name: "direct", addr: app.Addr, md: metadata.Pairs("ms-aspnetcore-token", token, "x-forwarded-for", "127.0.0.1:1", "x-forwarded-proto", "https")},
		{name: "loopgate", addr: laddr, tls: true},
		{name: "nginx", addr: ng.Addr, tls: true},
	}
	for _, t := range targets {
		creds := insecure.NewCredentials()
		if t.tls {
			creds = credentials.NewTLS(&tls.Config{InsecureSkipVerify: true}) //nolint:gosec // a benchmark's self-signed certificate
		}
		if t.cc, err = grpc.NewClient(t.addr, grpc.WithTransportCredentials(creds)); err != nil {
			return err
		}
		defer t.cc.Close()
		// Warm-up: starts loopgate's app, fills the pools.
		if _, err := measure(t, 2*time.Second, *conc); err != nil {
			return fmt.Errorf("%s warm-up: %w", t.name, err)
		}
	}

	samples := map[string][]sample{}
	for r := range *reps {
		for i := range targets {
			t := targets[(i+r)%len(targets)]
			sat, err := measure(t, *dur, *conc)
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			one, err := measure(t, *dur/2, 1)
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			s := sample{rps: sat.rps, p50: sat.p50, p99: sat.p99, l50: one.p50, l99: one.p99}
			fmt.Fprintf(os.Stderr, "grpccompare: rep %d %-8s %8.0f calls/s p50 %v p99 %v; one caller p50 %v p99 %v\n",
				r+1, t.name, s.rps, s.p50, s.p99, s.l50, s.l99)
			samples[t.name] = append(samples[t.name], s)
		}
	}
	return report(*out, targets, samples, *reps, *dur, *conc)
}

// startApp runs examples/grpc hosted-style on a free port with the token.
func startApp(bin string, cpu int) (*harness.Proc, error) {
	port, err := harness.FreePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "ASPNETCORE_PORT="+strconv.Itoa(port), "ASPNETCORE_APPL_PATH=/", "ASPNETCORE_TOKEN="+token)
	return harness.StartProc("app", cmd, "127.0.0.1:"+strconv.Itoa(port), cpu)
}

// result is one run's numbers.
type result struct {
	rps      float64
	p50, p99 time.Duration
}

// measure runs c callers making unary calls for d.
func measure(t *target, d time.Duration, c int) (result, error) {
	client := testpb.NewTestServiceClient(t.cc)
	ctx := context.Background()
	if t.md != nil {
		ctx = metadata.NewOutgoingContext(ctx, t.md)
	}
	var (
		mu   sync.Mutex
		lats []time.Duration
		errs []error
		wg   sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(d)
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			own := make([]time.Duration, 0, 1<<14)
			for time.Now().Before(end) {
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				t0 := time.Now()
				_, err := client.EmptyCall(cctx, &testpb.Empty{})
				cancel()
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				own = append(own, time.Since(t0))
			}
			mu.Lock()
			lats = append(lats, own...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if len(errs) > 0 {
		return result{}, errors.Join(errs[0], fmt.Errorf("%d callers failed", len(errs)))
	}
	if len(lats) == 0 {
		return result{}, errors.New("no call completed")
	}
	slices.Sort(lats)
	pct := func(q float64) time.Duration { return lats[min(len(lats)-1, int(q*float64(len(lats))))] }
	return result{rps: float64(len(lats)) / elapsed.Seconds(), p50: pct(0.50), p99: pct(0.99)}, nil
}

func median[T int64 | float64 | time.Duration](v []T) T {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func report(path string, targets []*target, samples map[string][]sample, reps int, d time.Duration, c int) error {
	type row struct {
		name               string
		rps                float64
		p50, p99, l50, l99 time.Duration
	}
	rows := map[string]row{}
	for _, t := range targets {
		ss := samples[t.name]
		var rps []float64
		var p50, p99, l50, l99 []time.Duration
		for _, s := range ss {
			rps, p50, p99, l50, l99 = append(rps, s.rps), append(p50, s.p50), append(p99, s.p99), append(l50, s.l50), append(l99, s.l99)
		}
		rows[t.name] = row{t.name, median(rps), median(p50), median(p99), median(l50), median(l99)}
	}
	n, dir := rows["nginx"], rows["direct"]
	var b strings.Builder
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	fmt.Fprintf(&b, "# Unary gRPC: loopgate (h2c) vs grpc-go direct vs nginx grpc_pass (grpccompare)\n\n")
	fmt.Fprintf(&b, "%s, kernel %s, %s, grpc-go client; %d interleaved repetitions, medians; saturation: %d concurrent callers on one client connection for %s; one caller for %s; EmptyCall to examples/grpc (grpc-go behind the pairing middleware, h2c); servers on CPU 0, client on CPU 1. loopgate and nginx: TLS + HTTP/2 to the client, h2c to the app; direct: h2c, no TLS (the floor).\n\n",
		time.Now().UTC().Format("2006-01-02"), strings.TrimSpace(string(kernel)), harness.Version("nginx"), reps, c, d, d/2)
	b.WriteString("| target | calls/s | vs nginx | vs direct | p50 | p99 | one caller p50 | p99 | p50 vs nginx |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, t := range targets {
		r := rows[t.name]
		fmt.Fprintf(&b, "| %s | %.0f | %.2f | %.2f | %v | %v | %v | %v | %.2f |\n", r.name, r.rps, r.rps/n.rps, r.rps/dir.rps,
			r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.l50.Round(time.Microsecond), r.l99.Round(time.Microsecond),
			float64(r.l50)/float64(n.l50))
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	fmt.Print(b.String())
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// Command h2compare measures HTTP/2 against HTTP/1.1 over TLS with h2load
// (Debian's nghttp2-client): loopgate with --tls-listen, and nginx with
// HTTP/2 on in front of the same benchmark backend program
// (bench/internal/backend -pairing=off). Servers run on CPU 0, h2load on
// CPU 1 when both are available. It writes a Markdown table to
// bench/results/h2-latest.md (or -out).
//
// Usage: go run ./bench/cmd/h2compare [-d 10s] [-c 16] [-m 10] [-out FILE]
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/loopgate/loopgate/bench/internal/harness"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "h2compare:", err)
		os.Exit(1)
	}
}

type result struct {
	target, proto   string
	rps             float64
	mean, sd, max   string
	succeeded, fail int64
}

func run() error {
	dur := flag.Duration("d", 10*time.Second, "measuring time per run")
	conns := flag.Int("c", 16, "client connections")
	streams := flag.Int("m", 10, "concurrent streams per HTTP/2 connection")
	out := flag.String("out", "bench/results/h2-latest.md", "Markdown report")
	flag.Parse()

	h2load, err := exec.LookPath("h2load")
	if err != nil {
		if os.Geteuid() != 0 {
			return errors.New("h2load is not installed (apt-get install nghttp2-client)")
		}
		fmt.Fprintln(os.Stderr, "h2compare: installing nghttp2-client")
		cmd := exec.Command("apt-get", "-y", "install", "nghttp2-client")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get install nghttp2-client: %w\n%s", err, b)
		}
		if h2load, err = exec.LookPath("h2load"); err != nil {
			return err
		}
	}
	tmp, err := os.MkdirTemp("", "h2compare-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintln(os.Stderr, "h2compare: building loopgate and the backend")
	bins, err := harness.Build(tmp)
	if err != nil {
		return err
	}
	serverCPU, loadCPU := -1, -1
	if harness.CanPin() {
		serverCPU, loadCPU = 0, 1
	} else {
		fmt.Fprintln(os.Stderr, "h2compare: CPUs 0 and 1 are not both available: not pinning")
	}
	if err := harness.WriteCert(tmp); err != nil {
		return err
	}

	// loopgate: TLS listener, HTTP/2 and HTTP/1.1 by ALPN.
	app := filepath.Join(tmp, "app")
	if err := harness.WriteApp(app, bins.Backend, "-pairing=off"); err != nil {
		return err
	}
	lport, err := harness.FreePort()
	if err != nil {
		return err
	}
	laddr := "127.0.0.1:" + strconv.Itoa(lport)
	lg := exec.Command(bins.Loopgate, "serve", "--tls-listen", laddr, "--tls-cert", filepath.Join(tmp, "cert.pem"),
		"--tls-key", filepath.Join(tmp, "key.pem"), "--admin", "127.0.0.1:0", "--access-log=false", app)
	var lgLog strings.Builder
	lg.Stdout, lg.Stderr = &lgLog, &lgLog
	lg.WaitDelay = 10 * time.Second // a backend left holding the output pipe must not hang Wait
	if err := harness.StartPinned(lg, serverCPU); err != nil {
		return err
	}
	defer harness.StopCmd(lg) // SIGTERM: loopgate stops its backend
	if err := harness.WaitListening(laddr, 15*time.Second); err != nil {
		return fmt.Errorf("loopgate: %w\n%s", err, lgLog.String())
	}

	// nginx with HTTP/2 in front of its own backend process.
	be, err := harness.StartBackend(bins.Backend, "off", "", serverCPU)
	if err != nil {
		return err
	}
	defer be.Stop()
	ng, err := harness.StartNginxTLS(tmp, be.Addr, serverCPU)
	if err != nil {
		return fmt.Errorf("nginx: %w", err)
	}
	defer ng.Stop()
	naddr := ng.Addr

	var results []result
	for _, t := range []struct{ name, addr string }{{"loopgate", laddr}, {"nginx", naddr}} {
		for _, proto := range []string{"h2", "http/1.1"} {
			// A short warm-up run starts loopgate's backend and fills the pools.
			if _, err := load(h2load, loadCPU, t.addr, proto, 2*time.Second, *conns, *streams); err != nil {
				return fmt.Errorf("%s %s warm-up: %w", t.name, proto, err)
			}
			r, err := load(h2load, loadCPU, t.addr, proto, *dur, *conns, *streams)
			if err != nil {
				return fmt.Errorf("%s %s: %w", t.name, proto, err)
			}
			r.target = t.name
			fmt.Fprintf(os.Stderr, "h2compare: %-8s %-8s %9.0f req/s mean %s\n", r.target, r.proto, r.rps, r.mean)
			results = append(results, r)
		}
	}
	return report(*out, results, *dur, *conns, *streams)
}

var (
	reFinished = regexp.MustCompile(`finished in [^,]+, ([0-9.]+) req/s`)
	reRequests = regexp.MustCompile(`requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed`)
	reTime     = regexp.MustCompile(`time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)`)
	reProto    = regexp.MustCompile(`Application protocol: (\S+)`)
)

// load runs h2load for d: HTTP/2 with m streams per connection, or
// HTTP/1.1 (--h1, one request at a time per connection) over TLS.
func load(bin string, cpu int, addr, proto string, d time.Duration, c, m int) (result, error) {
	args := []string{"-D", strconv.Itoa(int(d.Seconds())), "-c", strconv.Itoa(c), "-t", "1", "https://" + addr + "/"}
	if proto == "h2" {
		args = append(args, "-m", strconv.Itoa(m))
	} else {
		args = append(args, "--h1")
	}
	cmd := exec.Command(bin, args...)
	var b strings.Builder
	cmd.Stdout, cmd.Stderr = &b, &b
	if err := harness.StartPinned(cmd, cpu); err != nil {
		return result{}, err
	}
	if err := cmd.Wait(); err != nil {
		return result{}, fmt.Errorf("h2load: %w\n%s", err, b.String())
	}
	s := b.String()
	f, rq, tm, pr := reFinished.FindStringSubmatch(s), reRequests.FindStringSubmatch(s), reTime.FindStringSubmatch(s), reProto.FindStringSubmatch(s)
	if f == nil || rq == nil || tm == nil || pr == nil {
		return result{}, fmt.Errorf("h2load output not understood:\n%s", s)
	}
	if pr[1] != proto {
		return result{}, fmt.Errorf("asked for %s, negotiated %s", proto, pr[1])
	}
	r := result{proto: proto, mean: tm[3], sd: tm[4], max: tm[2]}
	r.rps, _ = strconv.ParseFloat(f[1], 64)
	r.succeeded, _ = strconv.ParseInt(rq[1], 10, 64)
	r.fail, _ = strconv.ParseInt(rq[2], 10, 64)
	if r.succeeded == 0 || r.fail > 0 {
		return r, fmt.Errorf("%d requests succeeded, %d failed\n%s", r.succeeded, r.fail, s)
	}
	return r, nil
}

func report(path string, rs []result, d time.Duration, c, m int) error {
	nginx := map[string]float64{}
	for _, r := range rs {
		if r.target == "nginx" {
			nginx[r.proto] = r.rps
		}
	}
	var b strings.Builder
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	v, _ := exec.Command("h2load", "--version").Output()
	fmt.Fprintf(&b, "# HTTP/2 vs HTTP/1.1 over TLS (h2compare)\n\n")
	fmt.Fprintf(&b, "%s, kernel %s, %s, %s; %s runs per protocol, %d connections, %d streams per HTTP/2 connection (HTTP/1.1: one request at a time per connection); GET / (13-byte body); servers on CPU 0, h2load on CPU 1.\n\n",
		time.Now().UTC().Format("2006-01-02"), strings.TrimSpace(string(kernel)), harness.Version("nginx"), strings.TrimSpace(string(v)), d, c, m)
	b.WriteString("| target | protocol | requests/s | vs nginx same protocol | latency mean | sd | max |\n|---|---|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %s | %s | %.0f | %.2f | %s | %s | %s |\n", r.target, r.proto, r.rps, r.rps/nginx[r.proto], r.mean, r.sd, r.max)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	fmt.Print(b.String())
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

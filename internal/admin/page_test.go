package admin

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/metrics"
	"github.com/loopgate/loopgate/internal/status"
)

// pageFixture is a server with two apps, one serving with a chart of the
// last minutes and one in crashloop with both kinds of error.
func pageFixture(t *testing.T) (*Server, string) {
	t.Helper()
	started := time.Now().Add(-90 * time.Minute)
	snap := status.Snapshot{
		Version: "v1.4.0", Started: started, UptimeSeconds: 5400,
		Listeners:    []status.Listener{{Addr: "0.0.0.0:8080"}, {Addr: "[::]:8443", TLS: true}},
		Acceleration: status.Accel{Mode: "auto", Active: true, Redirected: 1234567, Passed: 89, Fallbacks: 1},
		Apps: []status.App{
			{Name: "/", VirtualPath: "/", Dir: "/srv/shop", State: "ready", Starts: 3, Crashes: 1, Restarts: 1, Recycles: 1,
				Usage: &status.Usage{CPUSeconds: 42.5, MemoryBytes: 187 << 20},
				Processes: []status.Process{
					{Slot: 0, PID: 4242, Port: 31877, State: "ready", Started: started, UptimeSeconds: 3600, Restarts: 1, Requests: 18234, LastExit: "signal: killed"},
					{Slot: 1, PID: 4250, Port: 40112, State: "ready", Started: started, UptimeSeconds: 5400, Requests: 17990},
				}},
			{Name: "/api", VirtualPath: "/api", Dir: "/srv/api", State: "crashloop", Starts: 12, RapidFailBlocks: 1,
				ConfigError:    `/srv/api/web.config:7: startupTimeLimit="4000": out of range 0-3600 <script>alert(1)</script>`,
				LastStartError: "the app listens on 127.0.0.1:5000, not on ASPNETCORE_PORT 28092: does it read ASPNETCORE_PORT?",
				Processes:      []status.Process{{Slot: 0, State: "crashloop", LastExit: "exit status 1"}}},
		},
	}
	m := metrics.New(metrics.Options{Version: "v1.4.0", Apps: []string{"/", "/api"},
		AppLoad: func(app string) (int64, int, int, int) {
			if app == "/" {
				return 3, 8, 3, 0
			}
			return 0, 0, 0, 0
		}})
	s := New(Options{Snapshot: func() status.Snapshot { return snap }, Gatherer: m.Registry(), SampleEvery: 5 * time.Second})
	s.SetHealth(Serving)
	// 60 samples 5 s apart: a request rate that climbs to about 40/s.
	t0 := time.Now().Add(-300 * time.Second)
	for i := range 60 {
		for range i * 4 {
			m.Observe(0, "GET", 200, time.Millisecond)
		}
		s.hist.record(t0.Add(time.Duration(i) * 5 * time.Second))
	}
	return s, servePage(t, s)
}

// servePage serves s on 127.0.0.1 without starting its sampler.
func servePage(t *testing.T, s *Server) string {
	t.Helper()
	ts := &http.Server{Handler: s.Handler()}
	ln := listen(t)
	go ts.Serve(ln)
	t.Cleanup(func() { ts.Close() })
	return "http://" + ln.Addr().String()
}

func TestStatusPage(t *testing.T) {
	_, base := pageFixture(t)
	code, body, h := get(t, base+"/")
	if code != 200 || h.Get("Content-Type") != "text/html; charset=utf-8" || !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("GET /: %d %q %q", code, h.Get("Content-Type"), h.Get("Content-Security-Policy"))
	}
	for _, want := range []string{
		`<meta name="viewport" content="width=device-width, initial-scale=1">`,
		`<meta http-equiv="refresh" content="5">`,
		"<h1>loopgate v1.4.0</h1>", "up 1h30m", `<span class="serving">serving</span>`,
		"listening: http://0.0.0.0:8080, https://[::]:8443",
		"acceleration: eBPF sockmap (auto): 1.2M messages redirected, 89 passed, 1 fell back to TCP",
		`<h2>/ <span class="badge ready">ready</span></h2>`, `<p class="dir">/srv/shop</p>`,
		"<dt>in flight</dt><dd>3</dd>", "<dt>memory</dt><dd>187 MiB</dd>", "<dt>CPU</dt><dd>42.5 s</dd>",
		"<dt>crashes</dt><dd>1</dd>",
		"<td>4242</td><td>31877</td><td>ready</td><td>1h0m</td><td>1</td><td>18234</td><td>signal: killed</td>",
		"<span>10 min ago</span><span>max 50/s</span><span>now</span>",
		`<h2>/api <span class="badge crashloop">crashloop</span></h2>`,
		"<td>-</td><td>-</td><td>crashloop</td><td>-</td><td>0</td><td>0</td><td>exit status 1</td>",
		"<b>last start failure:</b>\nthe app listens on 127.0.0.1:5000, not on ASPNETCORE_PORT 28092: does it read ASPNETCORE_PORT?",
		// Text from files is escaped.
		`out of range 0-3600 &lt;script&gt;alert(1)&lt;/script&gt;`,
		`<a href="/status">/status</a>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	// The request rate of the last minutes: 59 intervals drawn, the last
	// one 236 requests in 5 s (47/s, so the scale tops at 50/s); /api had
	// none.
	if n := strings.Count(body, "<polyline"); n != 2 {
		t.Errorf("%d charts, want one per app", n)
	}
	// Nothing since the last sample, 5 s ago: the rate now is 0.
	if !strings.Contains(body, "<dt>requests</dt><dd>0/s</dd>") {
		t.Errorf("requests per second missing:\n%s", body)
	}
	for _, external := range []string{"<script", "<link", " src=", "url(", "@import"} {
		if strings.Contains(body, external) {
			t.Errorf("the page uses %q: it must need nothing external", external)
		}
	}
}

func TestChartScale(t *testing.T) {
	for v, want := range map[float64]float64{0: 1, 0.3: 1, 1: 1, 1.5: 2, 3: 5, 7: 10, 10: 10, 11: 20, 45: 50, 120: 200, 999: 1000} {
		if got := niceCeil(v); got != want {
			t.Errorf("niceCeil(%v) = %v, want %v", v, got, want)
		}
	}
	if c := chart([]float64{1}, 5*time.Second); !c.Empty || c.Minutes != 10 {
		t.Errorf("one rate: %+v", c)
	}
	c := chart([]float64{0, 5, 10}, 5*time.Second)
	if c.Max != "10/s" || !strings.HasSuffix(c.Points, "300.0,2.0") || !strings.HasPrefix(c.Area, "294.9,60.0 ") {
		t.Errorf("chart %+v", c)
	}
}

// TestStatusPageInChromium renders the page in headless Chromium at a
// phone's width and at a desktop's: it must lay out without horizontal
// overflow (the right margin stays background all the way down), with its
// text drawn, and the browser's DOM must hold both apps. With
// LOOPGATE_UPDATE_DOCS=1 the desktop screenshot replaces
// docs/status-page.png, which README shows; LOOPGATE_SCREENSHOT_DIR=DIR
// keeps both screenshots there.
func TestStatusPageInChromium(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("LOOPGATE_REQUIRE_SUITES") == "1" {
			t.Fatal("chromium is not installed (apt-get install chromium; make test does as root)")
		}
		t.Skip("chromium is not installed (apt-get install chromium)")
	}
	_, base := pageFixture(t)
	dir := t.TempDir()
	run := func(args ...string) []byte {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		all := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
			"--no-first-run", "--user-data-dir=" + filepath.Join(dir, "profile")}, args...)
		cmd := exec.CommandContext(ctx, chromium, append(all, base+"/")...)
		cmd.Dir = dir
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			t.Fatalf("chromium %v: %v\n%s", args, err, errOut.String())
		}
		return out.Bytes()
	}
	dom := string(run("--dump-dom"))
	for _, want := range []string{`<section id="app/">`, `<section id="app/api">`, "<polyline"} {
		if !strings.Contains(dom, want) {
			t.Errorf("Chromium's DOM lacks %q", want)
		}
	}
	for _, size := range []struct {
		name string
		w, h int
	}{{"phone", 390, 1500}, {"desktop", 1200, 800}} {
		file := filepath.Join(dir, size.name+".png")
		run("--window-size="+itoa(size.w)+","+itoa(size.h), "--screenshot="+file)
		img := readPNG(t, file)
		if b := img.Bounds(); b.Dx() != size.w || b.Dy() != size.h {
			t.Fatalf("%s screenshot is %v", size.name, b)
		}
		bg := img.At(size.w-1, 0)
		if !sameColor(bg, color.RGBA{0xf4, 0xf6, 0xf8, 0xff}) {
			t.Errorf("%s: the page background is %v", size.name, bg)
		}
		// Nothing reaches into the right margin: no row overflows.
		for y := 0; y < size.h; y++ {
			for x := size.w - 4; x < size.w; x++ {
				if !sameColor(img.At(x, y), bg) {
					t.Fatalf("%s: the layout overflows at (%d,%d): %v", size.name, x, y, img.At(x, y))
				}
			}
		}
		// Text is drawn: dark pixels in the header, white cards below it.
		dark, white := 0, 0
		for y := 0; y < size.h; y++ {
			for x := 0; x < size.w; x++ {
				r, g, b, _ := img.At(x, y).RGBA()
				switch {
				case r < 0x4000 && g < 0x4000 && b < 0x4000:
					dark++
				case r == 0xffff && g == 0xffff && b == 0xffff:
					white++
				}
			}
		}
		if dark < 500 || white < size.w*100 {
			t.Errorf("%s: %d dark and %d white pixels: text or cards are missing", size.name, dark, white)
		}
		if d := os.Getenv("LOOPGATE_SCREENSHOT_DIR"); d != "" { // to look at them
			b, _ := os.ReadFile(file)
			os.WriteFile(filepath.Join(d, "status-page-"+size.name+".png"), b, 0o644)
		}
		if size.name == "desktop" && os.Getenv("LOOPGATE_UPDATE_DOCS") == "1" {
			b, _ := os.ReadFile(file)
			if err := os.WriteFile("../../docs/status-page.png", b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func readPNG(t *testing.T, file string) image.Image {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func sameColor(a, b color.Color) bool {
	ar, ag, ab, _ := a.RGBA()
	br, bg, bb, _ := b.RGBA()
	near := func(x, y uint32) bool { return x-y < 0x300 || y-x < 0x300 }
	return near(ar, br) && near(ag, bg) && near(ab, bb)
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func itoa(n int) string { return strconv.Itoa(n) }

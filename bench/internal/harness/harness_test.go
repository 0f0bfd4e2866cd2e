package harness

import (
	"os"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	var l Latencies
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Microsecond)
	}
	l.Merge(d)
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Microsecond}, {0.9, 90 * time.Microsecond}, {0.99, 99 * time.Microsecond}, {1, 100 * time.Microsecond}} {
		if got := l.Percentile(tc.q); got != tc.want {
			t.Errorf("p%v = %v, want %v", tc.q*100, got, tc.want)
		}
	}
	var empty Latencies
	if got := empty.Percentile(0.5); got != 0 {
		t.Errorf("empty p50 = %v, want 0", got)
	}
}

func TestCPUTimeGrowsWithWork(t *testing.T) {
	before, err := CPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(200 * time.Millisecond)
	x := 0
	for time.Now().Before(deadline) {
		x++
	}
	after, err := CPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after-before < 50*time.Millisecond {
		t.Errorf("200 ms of spinning counted as %v of CPU (x=%d)", after-before, x)
	}
	if _, err := CPUTime(1 << 30); err == nil {
		t.Error("CPUTime of a PID that cannot exist: no error")
	}
}

func TestTailFindsLoggedFields(t *testing.T) {
	var l tail
	l.Write([]byte(`{"level":"info","event":"admin","addr":"127.0.0.1:4`))
	if got := l.field("admin", "addr"); got != "" {
		t.Fatalf("half a line gave %q", got)
	}
	l.Write([]byte("1234\"}\nnot json\n{\"event\":\"ready\"}\n"))
	if got := l.field("admin", "addr"); got != "127.0.0.1:41234" {
		t.Errorf("admin addr = %q, want 127.0.0.1:41234", got)
	}
}

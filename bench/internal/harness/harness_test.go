package harness

import (
	"os"
	"syscall"
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
	// Spin until the kernel's own account (getrusage) shows 200 ms of CPU,
	// not for 200 ms of wall time: on a loaded machine the spinner may get
	// a tenth of that. The bound only stops a broken getrusage from hanging.
	start := processCPU(t)
	x := 0
	for limit := time.Now().Add(30 * time.Second); processCPU(t)-start < 200*time.Millisecond; x++ {
		if time.Now().After(limit) {
			t.Fatal("200 ms of CPU not reached in 30 s of spinning")
		}
	}
	after, err := CPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after-before < 150*time.Millisecond {
		t.Errorf("200 ms of CPU (getrusage) counted as %v by CPUTime (x=%d)", after-before, x)
	}
	if _, err := CPUTime(1 << 30); err == nil {
		t.Error("CPUTime of a PID that cannot exist: no error")
	}
}

// processCPU is this process's user and system time as getrusage reports it.
func processCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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

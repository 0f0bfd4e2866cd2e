package supervisor

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/loopgate/loopgate/configload"
)

// readyApp returns an app whose n (fake) processes are all ready.
func readyApp(tb testing.TB, n int) *App {
	tb.Helper()
	f := newFakeOS(func(*Cmd) behaviour { return listening() })
	spec := testSpec(tb)
	spec.ProcessesPerApplication = n
	s, err := New([]*configload.AppSpec{spec}, Options{OS: f})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	a := s.Apps()[0]
	deadline := time.Now().Add(10 * time.Second)
	for a.Status().State != StateReady || a.readyProcs() != n {
		if time.Now().After(deadline) {
			tb.Fatalf("app not ready: %+v", a.Status())
		}
		if p, o := a.Acquire(context.Background()); o == Ready {
			p.Release()
		}
		time.Sleep(time.Millisecond)
	}
	return a
}

func (a *App) readyProcs() int { return len(a.view.Load().procs) }

// The request hot path: a ready backend is handed out and given back
// without allocating.
func TestAcquireReleaseDoesNotAllocate(t *testing.T) {
	a := readyApp(t, 2)
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		p, o := a.Acquire(ctx)
		if o != Ready {
			t.Fatalf("Acquire: %v", o)
		}
		p.Release()
	})
	if allocs != 0 {
		t.Errorf("Acquire+Release allocates %.1f times per call, want 0", allocs)
	}
}

func BenchmarkAcquireRelease(b *testing.B) {
	for _, n := range []int{1, 4} {
		b.Run("procs="+strconv.Itoa(n), func(b *testing.B) {
			a := readyApp(b, n)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				p, _ := a.Acquire(ctx)
				p.Release()
			}
		})
	}
}

func BenchmarkAcquireReleaseParallel(b *testing.B) {
	a := readyApp(b, 2)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p, _ := a.Acquire(ctx)
			p.Release()
		}
	})
}

// BenchmarkColdStart measures the first request's wait: spawn the test
// backend, probe until it listens, hand it out (then kill it).
func BenchmarkColdStart(b *testing.B) {
	spec := realSpec(b)
	b.ReportAllocs()
	for b.Loop() {
		s, err := New([]*configload.AppSpec{spec}, Options{})
		if err != nil {
			b.Fatal(err)
		}
		p, o := s.Apps()[0].Acquire(context.Background())
		if o != Ready {
			b.Fatalf("Acquire: %v", o)
		}
		p.Release()
		b.StopTimer()
		s.Kill()
		b.StartTimer()
	}
}

package main

import (
	"reflect"
	"testing"
)

func TestAllocFailures(t *testing.T) {
	results := []byte(`goos: linux
BenchmarkHeaderRewrite-2   	 3971730	       433.0 ns/op	       0 B/op	       0 allocs/op
BenchmarkForward/path=loopgate/method=GET-2   	 30000	   36000 ns/op	       3 B/op	       0 allocs/op
BenchmarkRoute/target=deep-2   	 1000	   30 ns/op	      16 B/op	       1 allocs/op
BenchmarkRoute/target=deep-2   	 1000	   30 ns/op	      16 B/op	       1 allocs/op
PASS
`)
	got := allocFailures(results)
	want := []string{"BenchmarkRoute/target=deep-2: 1 allocs/op, want 0"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("allocFailures = %q, want %q", got, want)
	}
}

func TestTimingFailures(t *testing.T) {
	// benchstat -format csv output, trimmed.
	table := `,base.txt,,current.txt,,,
,sec/op,CI,sec/op,CI,vs base,P
HeaderRewrite-2,4.0e-07,2%,5.0e-07,3%,+25.00%,p=0.002 n=6
Route/target=deep-2,3.0e-08,2%,3.3e-08,3%,+10.00%,p=0.002 n=6
Route/target=root-2,3.0e-08,2%,4.0e-08,30%,~,p=0.240 n=6
Forward/path=loopgate/method=GET-2,3.0e-05,20%,6.0e-05,40%,+100.00%,p=0.002 n=6
AcquireRelease/procs=1-2,9.0e-09,2%,7.0e-09,2%,-22.22%,p=0.002 n=6
geomean,1e-07,,1e-07,,+1.00%,

,base.txt,,current.txt,,,
,allocs/op,CI,allocs/op,CI,vs base,P
HeaderRewrite-2,1,0%,2,0%,+100.00%,p=0.002 n=6
`
	got, err := timingFailures(table, 15)
	if err != nil {
		t.Fatal(err)
	}
	// Route +10 % is under the threshold, root is noise, Forward is not
	// timed, a speed-up is fine, and other units are not timings.
	want := []string{"HeaderRewrite-2: sec/op +25.0% (p=0.002 n=6), more than 15 %"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("timingFailures = %q, want %q", got, want)
	}
}

func TestPersistent(t *testing.T) {
	before := []string{"Route/target=root-2: sec/op +16.3% (p=0.041 n=6), more than 15 %", "HeaderRewrite-2: sec/op +30.0% (p=0.002 n=6), more than 15 %"}
	now := []string{"HeaderRewrite-2: sec/op +28.0% (p=0.002 n=6), more than 15 %", "Route/target=deep-2: sec/op +17.0% (p=0.002 n=6), more than 15 %"}
	got := persistent(before, now)
	want := []string{"HeaderRewrite-2: sec/op +28.0% (p=0.002 n=6), more than 15 %"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("persistent = %q, want %q", got, want)
	}
}

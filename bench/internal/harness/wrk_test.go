package harness

import "testing"

// TestParseWrk reads two reports wrk 4.1.0 printed: a clean run, and one
// whose every answer was a 404 (counted as errors), plus a socket error line.
func TestParseWrk(t *testing.T) {
	for _, tc := range []struct {
		name, out string
		want      WrkResult
	}{
		{"clean", `Running 1s test @ http://127.0.0.1:38517/
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   393.71us    1.26ms  11.77ms   93.75%
    Req/Sec    34.03k     7.02k   42.47k    81.82%
  37261 requests in 1.10s, 4.73MB read
Requests/sec:  33864.52
Transfer/sec:      4.30MB
`, WrkResult{Requests: 37261, RPS: 33864.52}},
		{"errors", `Running 1s test @ http://127.0.0.1:38517/nothere
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   433.20us    1.07ms   9.40ms   90.32%
    Req/Sec    30.77k    12.61k   43.10k    70.00%
  30549 requests in 1.01s, 2.91MB read
  Socket errors: connect 0, read 2, write 1, timeout 4
  Non-2xx or 3xx responses: 30549
Requests/sec:  30105.66
Transfer/sec:      2.87MB
`, WrkResult{Requests: 30549, RPS: 30105.66, Errors: 30549 + 7}},
	} {
		got, err := ParseWrk(tc.out)
		if err != nil || got != tc.want {
			t.Errorf("%s: got %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
	if _, err := ParseWrk("unable to connect to 127.0.0.1:1 Connection refused\n"); err == nil {
		t.Error("wrk's connection failure parsed without an error")
	}
}

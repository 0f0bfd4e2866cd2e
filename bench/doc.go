// Package bench holds loopgate's end-to-end benchmarks (BenchmarkEndToEnd:
// a fasthttp backend hit directly, through `loopgate serve --accel off` and
// through `--accel on`), the comparison harness against nginx and HAProxy
// (bench/cmd/compare, `make bench-compare`) and the latency guard
// (bench/cmd/guard, `make bench-guard`). Run the benchmarks with
//
//	go test -run '^$' -bench . -benchtime 3s -count 6 ./bench/
//
// and read them with `benchstat -col /path`. The programs they start are
// built on first use, so `go test ./...` without -bench stays fast. See
// README.md for the method and the recorded results. Nothing here is used
// at run time.
package bench

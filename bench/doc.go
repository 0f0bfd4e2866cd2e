// Package bench holds loopgate's end-to-end benchmarks and the comparison
// harness against nginx and HAProxy. Run them with
//
//	go test -bench . -count 6 ./bench/...
//
// and read the results with benchstat. Nothing here is used at run time.
package bench

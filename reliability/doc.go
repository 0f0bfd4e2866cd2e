// Package reliability holds loopgate's fault, abuse and load tests: the
// real binary, run as a subprocess, hosting a real backend
// (internal/testbackend, a Go app behind the pairing middleware), attacked
// from outside the way an edge is on its bad days.
//
// Faults: backends SIGKILLed under load, a backend that hangs, loopgate
// itself SIGKILLed and restarted, an unwritable or full stdout log
// directory, file descriptor exhaustion. Bad input: spoofed pairing
// headers end to end, a direct connection to a backend port, slowloris and
// slow-read clients. Load: thousands of idle keep-alive connections. Each
// test asserts what a user would see (nothing lost, nobody let in) and logs
// the figures docs/reliability.md reports.
//
// The package has no non-test code besides this comment. The tests build
// loopgate and the test backend once (TestMain), bound every wait and kill
// every process they started in t.Cleanup. Longer versions of the load scenarios
// run with LOOPGATE_LONG=1. The ten-minute soak is a separate program in
// reliability/soak, not part of `make test`. Framing and header-rewrite
// cases that need no process live next to the code in fastpath
// (TestSmugglingCorpus, FuzzHeaderRewrite, FuzzRoute).
package reliability

// Package loopgatetest runs the real loopgate binary as a subprocess for
// the tests of cmd/loopgate and reliability: it builds loopgate (and the
// test's own backend programs) once per test binary, starts `loopgate
// serve` on kernel-picked 127.0.0.1 ports, captures its JSON log, learns
// the bound front and admin addresses from the startup log, reads /status,
// signals, stops and kills it.
//
// Every process it starts is killed and reaped in t.Cleanup, and every
// wait it offers is bounded. It imports "testing" and is for tests only:
// no program or library package may import it. What a test's backend is
// (web.config writers, fault apps, scenarios) stays with that test.
package loopgatetest

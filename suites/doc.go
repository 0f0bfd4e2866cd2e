// Package suites runs loopgate against software nobody on the team wrote,
// so the next class of defect is found here and not by users (issue 13):
//
//   - WebSocket frame cases against a gorilla/websocket backend
//     (internal/wsecho), compared byte for byte with the same backend hit
//     directly, and every way either side of a tunnel can end;
//   - h2spec, built from its Go module at a pinned version, against
//     loopgate's TLS listener, with a short list of known failures;
//   - real non-Go backends started through a web.config: python3 -m
//     http.server and gunicorn (Debian's), served, recycled and stopped.
//
// The package has no non-test code besides this comment. The tests build
// loopgate and wsecho once (TestMain), bound every wait and kill every
// process they started in t.Cleanup. A tool that is missing (gunicorn,
// h2spec's build) skips its test with the reason, unless
// LOOPGATE_REQUIRE_SUITES=1 (set by .ci/run), which makes it a failure.
package suites

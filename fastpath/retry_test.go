package fastpath

import (
	"testing"

	"github.com/loopgate/loopgate/supervisor"
)

// TestRetryRule is the retry rule's documentation: which failed attempts
// forward makes again. One retry at most; only what cannot have reached the
// app, or an idempotent request with its body in memory that got no byte
// of response and whose process did not end by its own hand.
func TestRetryRule(t *testing.T) {
	type facts = retryFacts
	for _, c := range []struct {
		why   string
		st    stage
		facts facts
		want  bool
	}{
		{"refused or timed-out connect: nothing was sent", stageConnect, facts{}, true},
		{"refused connect, even for a POST with a streamed body", stageConnect, facts{streamed: true}, true},
		{"the write of the head failed: the backend had closed the connection", stageSend, facts{}, true},
		{"the write of a streamed request's head failed", stageSend, facts{streamed: true}, true},
		{"no byte of response to a GET: a stale connection or a dead backend", stageNoResponse, facts{idempotent: true}, true},
		{"no byte of response to a POST: it may have been processed", stageNoResponse, facts{}, false},
		{"no byte of response to a PUT whose body was streamed: it cannot be sent again", stageNoResponse, facts{idempotent: true, streamed: true}, false},
		{"a broken or timed-out response head: the app saw the request", stageBadResponse, facts{idempotent: true}, false},
		{"the redial after a stale pooled connection was refused: nothing was sent", stageRedial, facts{}, true},
		{"no byte of response to a GET, its process ended by its own hand (exit status, SIGABRT, SIGSEGV): the request may have killed it",
			stageNoResponse, facts{idempotent: true, exit: supervisor.ExitSelf}, false},
		{"no byte of response to a GET, its process killed from outside (SIGKILL, SIGTERM)", stageNoResponse, facts{idempotent: true, exit: supervisor.ExitKilled}, true},
		{"no byte of response to a GET, its process still running: a stale connection", stageNoResponse, facts{idempotent: true, exit: supervisor.ExitNone}, true},
		{"a refused connect is retried whatever became of the process", stageConnect, facts{exit: supervisor.ExitSelf}, true},
		{"a second failure is never retried (connect)", stageConnect, facts{attempt: 1}, false},
		{"a second failure is never retried (no response)", stageNoResponse, facts{attempt: 1, idempotent: true}, false},
	} {
		if got := retryable(c.st, c.facts); got != c.want {
			t.Errorf("%s: retryable(%d, %+v) = %v, want %v", c.why, c.st, c.facts, got, c.want)
		}
	}
}

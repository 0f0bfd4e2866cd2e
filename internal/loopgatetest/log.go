// loopgate's JSON log as a test reads it: the decoded lines (Line), the
// bounded wait for one (WaitLog), and the lines so far, decoded or raw.

package loopgatetest

import (
	"time"
)

// Line is one JSON line of loopgate's log, decoded; a line that is not
// JSON is nil here and kept whole in Raw.
type Line map[string]any

// Str returns the string field k, or "" if there is none.
func (l Line) Str(k string) string { s, _ := l[k].(string); return s }

// WaitLog returns the first log line, already seen or new, for which pred
// is true, or nil after timeout (0: only the lines already there). pred
// runs with the log locked: it must not call p's methods.
func (p *Process) WaitLog(timeout time.Duration, pred func(Line) bool) Line {
	return p.waitLog(timeout, pred, nil)
}

// waitLog is WaitLog that also gives up, after reading the last lines,
// once stop is closed (nil: never).
func (p *Process) waitLog(timeout time.Duration, pred func(Line) bool, stop <-chan struct{}) Line {
	deadline := time.After(timeout)
	seen, stopped := 0, false
	for {
		p.mu.Lock()
		for ; seen < len(p.lines); seen++ {
			if pred(p.lines[seen]) {
				l := p.lines[seen]
				p.mu.Unlock()
				return l
			}
		}
		newc := p.newc
		p.mu.Unlock()
		if timeout == 0 || stopped {
			return nil
		}
		select {
		case <-newc:
		case <-stop:
			stopped = true // one more pass: the log is read in full by now
		case <-deadline:
			return nil
		}
	}
}

// Count returns how many log lines so far pred is true for. pred runs with
// the log locked: it must not call p's methods.
func (p *Process) Count(pred func(Line) bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.lines {
		if pred(l) {
			n++
		}
	}
	return n
}

// Lines returns the log lines so far, decoded.
func (p *Process) Lines() []Line {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Line(nil), p.lines...)
}

// Raw returns the log lines so far as written, JSON or not.
func (p *Process) Raw() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.raw...)
}

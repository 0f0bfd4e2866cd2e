package configload

import (
	"errors"
	"strconv"
	"strings"
	"unicode"
)

// ErrInvalid is matched (errors.Is) by every error that reports problems in
// a configuration: an invalid web.config or an invalid virtual path. Callers
// get the problems themselves with errors.As(err, &*Error).
var ErrInvalid = errors.New("invalid configuration")

// Error reports every problem found in one web.config, errors and warnings,
// in file order. Load and Parse return it when at least one problem is an
// error (Warning false). It is not modified after it is returned.
type Error struct {
	Problems []Problem
}

// Error lists every problem, one per line.
func (e *Error) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// Is reports whether target is ErrInvalid.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// Errors counts the problems that are errors (not warnings).
func (e *Error) Errors() int {
	n := 0
	for _, p := range e.Problems {
		if !p.Warning {
			n++
		}
	}
	return n
}

// String formats p as `file:line: attr="value": rule`. The parts that do not
// apply are left out: `file: ...` when Line is 0, no file when File is empty,
// `file:line: <add>: rule` for an element, `file:line: rule` when Attr is
// empty. A warning reads `file:line: warning: ...`. A value holding quotes
// or control characters is written as a Go quoted string.
func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(p.Line))
		}
		b.WriteString(": ")
	}
	if p.Warning {
		b.WriteString("warning: ")
	}
	switch {
	case p.Attr == "":
	case strings.HasPrefix(p.Attr, "<"):
		b.WriteString(p.Attr)
		b.WriteString(": ")
	default:
		b.WriteString(p.Attr)
		b.WriteByte('=')
		b.WriteString(quoteValue(p.Value))
		b.WriteString(": ")
	}
	b.WriteString(p.Rule)
	return b.String()
}

// quoteValue wraps v in double quotes as written in the file (Windows paths
// keep their single backslashes), falling back to Go quoting only when v
// holds something that would make the line ambiguous.
func quoteValue(v string) string {
	if strings.IndexFunc(v, func(r rune) bool { return r == '"' || unicode.IsControl(r) || r == unicode.ReplacementChar }) >= 0 {
		return strconv.Quote(v)
	}
	return `"` + v + `"`
}

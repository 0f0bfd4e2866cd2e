package configload

import (
	"strings"
)

// environ is Options.Environ indexed for lookups with Windows semantics:
// names are case-insensitive. An exact-case match is preferred, then the
// first case-insensitive one, so a Linux environment holding both Path and
// PATH still gives one deterministic answer.
type environ struct {
	names  []string
	values []string
}

func newEnviron(list []string) environ {
	var e environ
	for _, kv := range list {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || name == "" {
			continue
		}
		e.names = append(e.names, name)
		e.values = append(e.values, value)
	}
	return e
}

func (e environ) lookup(name string) (string, bool) {
	for i, n := range e.names {
		if n == name {
			return e.values[i], true
		}
	}
	for i, n := range e.names {
		if strings.EqualFold(n, name) {
			return e.values[i], true
		}
	}
	return "", false
}

// nonEmpty returns the value of name when it is set to something: on
// Windows, where the reference runs, an empty variable does not exist.
func (e environ) nonEmpty(name string) (string, bool) {
	v, ok := e.lookup(name)
	return v, ok && v != ""
}

// portVar and applPathVar are the variables expand never replaces in
// arguments and <environmentVariable> values: the supervisor substitutes
// them on each start (DESIGN.md §4), the port being chosen then.
const (
	portVar     = "ASPNETCORE_PORT"
	applPathVar = "ASPNETCORE_APPL_PATH"
)

// perStartVar returns the canonical spelling of name when it is one of the
// variables substituted per start, matched in any case, else "".
func perStartVar(name string) string {
	switch {
	case strings.EqualFold(name, portVar):
		return portVar
	case strings.EqualFold(name, applPathVar):
		return applPathVar
	}
	return ""
}

// expand replaces %NAME% with the value of NAME from e, the way Windows'
// ExpandEnvironmentStrings does: names are case-insensitive, an unknown
// name is left as written and its closing % may open the next reference,
// and "%%" is not a reference. With perStart, %ASPNETCORE_PORT% and
// %ASPNETCORE_APPL_PATH% (any case) are written back in upper case whatever e
// holds, for the supervisor to substitute. unknown lists the
// names left unexpanded that look like variable names (so that "100%" or
// "50%-75%" raise nothing).
func expand(s string, e environ, perStart bool) (out string, unknown []string) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for {
		open := strings.IndexByte(s, '%')
		if open < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:open])
		s = s[open:] // s[0] == '%'
		closing := strings.IndexByte(s[1:], '%')
		if closing < 0 {
			b.WriteString(s)
			break
		}
		closing++ // index of the closing % in s
		name := s[1:closing]
		if v := perStartVar(name); perStart && v != "" {
			b.WriteString("%" + v + "%")
			s = s[closing+1:]
			continue
		}
		if v, ok := e.lookup(name); ok && name != "" {
			b.WriteString(v)
			s = s[closing+1:]
			continue
		}
		if looksLikeVarName(name) {
			unknown = append(unknown, name)
		}
		b.WriteString(s[:closing]) // "%name"; the closing % is looked at again
		s = s[closing:]
	}
	return b.String(), unknown
}

// looksLikeVarName reports whether s could be meant as a variable name:
// a letter or underscore, then letters, digits and _ ( ) . - such as
// ProgramFiles(x86).
func looksLikeVarName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		letter := r == '_' || (r >= 'A' && r <= 'Z') || (r >= 'a' && r <= 'z')
		if i == 0 && !letter {
			return false
		}
		if !letter && !(r >= '0' && r <= '9') && !strings.ContainsRune("().-", r) {
			return false
		}
	}
	return true
}

// splitCommandLine splits s into arguments by the rules of Windows'
// CommandLineToArgvW, which is how the reference's backend sees its
// arguments: spaces and tabs separate; double quotes group and are removed;
// 2n backslashes before a quote give n backslashes and the quote acts, 2n+1
// give n backslashes and a literal quote; other backslashes are literal; ""
// inside a quoted part gives a literal quote and ends the quoted part.
// unterminated reports a quoted part still open at the end, which Windows
// silently closes.
func splitCommandLine(s string) (args []string, unterminated bool) {
	i := 0
	for {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		if i >= len(s) {
			return args, unterminated
		}
		var b strings.Builder
		inQuote := false
	token:
		for i < len(s) {
			switch c := s[i]; c {
			case ' ', '\t':
				if !inQuote {
					break token
				}
				b.WriteByte(c)
				i++
			case '\\':
				n := 0
				for i < len(s) && s[i] == '\\' {
					n++
					i++
				}
				if i < len(s) && s[i] == '"' {
					b.WriteString(strings.Repeat(`\`, n/2))
					if n%2 == 1 {
						b.WriteByte('"')
						i++
					}
					// With an even count the quote is handled as a quote next.
				} else {
					b.WriteString(strings.Repeat(`\`, n))
				}
			case '"':
				if inQuote && i+1 < len(s) && s[i+1] == '"' {
					b.WriteByte('"')
					i++
				}
				inQuote = !inQuote
				i++
			default:
				b.WriteByte(c)
				i++
			}
		}
		if inQuote {
			unterminated = true
		}
		args = append(args, b.String())
	}
}

// longPathPrefix is Windows' \\?\ prefix, which lifts the path length limit
// and means nothing on Linux.
const longPathPrefix = `\\?\`

// windowsPath translates a path attribute written for Windows (DESIGN.md
// §4): a leading \\?\ is dropped and every backslash becomes a slash.
func windowsPath(s string) string {
	s = strings.TrimPrefix(s, longPathPrefix)
	return strings.ReplaceAll(s, `\`, "/")
}

// windowsArg translates one argument: only tokens that are plainly relative
// Windows paths (.\x, ..\x) are rewritten, since a backslash elsewhere may
// be meant (a regular expression, an escaped character).
func windowsArg(s string) string {
	if strings.HasPrefix(s, `.\`) || strings.HasPrefix(s, `..\`) {
		return strings.ReplaceAll(s, `\`, "/")
	}
	return s
}

// isDrivePath reports a Windows drive path such as C:\x or c:/x, which
// cannot exist on Linux.
func isDrivePath(s string) bool {
	return len(s) >= 3 && s[1] == ':' && (s[2] == '\\' || s[2] == '/') &&
		((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z'))
}

package configload

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// The value parsers return the rule a value broke, or "" when it is valid.
// IIS trims nothing, but a stray space around a number is never meant, so
// surrounding spaces are accepted.

// parseUint parses a decimal unsigned integer in [lo, hi].
func parseUint(s string, lo, hi uint64) (uint64, string) {
	s = strings.TrimSpace(s)
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Sprintf("not an unsigned integer (expected %d-%d)", lo, hi)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Sprintf("out of range %d-%d", lo, hi)
	}
	return n, ""
}

// parseBool accepts true and false in any case, as IIS does.
func parseBool(s string) (bool, string) {
	switch s = strings.TrimSpace(s); {
	case strings.EqualFold(s, "true"):
		return true, ""
	case strings.EqualFold(s, "false"):
		return false, ""
	}
	return false, "not a boolean (expected true or false)"
}

// maxRequestTimeout is the schema's upper bound for requestTimeout
// (1296000 s).
const maxRequestTimeout = 360 * time.Hour

const timeSpanForm = "expected [d.]hh:mm:ss, e.g. 00:02:00"

// parseTimeSpan parses an IIS timeSpan the way the aspNetCore schema
// validates requestTimeout: `[d.]hh:mm:ss[.fffffff]`, hours may exceed 23
// without a day part, minutes and seconds 0-59, whole seconds only, at most
// 360:00:00. A bare "0" is accepted as zero (no timeout).
func parseTimeSpan(s string) (time.Duration, string) {
	return parseTimeSpanMax(s, maxRequestTimeout)
}

// parseTimeSpanMax is parseTimeSpan with another upper bound (whole hours).
func parseTimeSpanMax(s string, limit time.Duration) (time.Duration, string) {
	outOfRange := fmt.Sprintf("out of range 00:00:00-%02d:00:00", limit/time.Hour)
	s = strings.TrimSpace(s)
	if s == "0" {
		return 0, ""
	}
	if strings.HasPrefix(s, "-") {
		return 0, outOfRange
	}
	fields := strings.Split(s, ":")
	if len(fields) != 3 {
		return 0, timeSpanForm
	}
	hoursField, minutes, secondsField := fields[0], fields[1], fields[2]
	days := ""
	if d, h, ok := strings.Cut(hoursField, "."); ok {
		days, hoursField = d, h
	}
	seconds, fraction, _ := strings.Cut(secondsField, ".")
	num := func(f string) (uint64, bool) {
		// Nine digits keep every sum below far from overflow.
		if f == "" || len(f) > 9 || strings.Trim(f, "0123456789") != "" {
			return 0, false
		}
		n, err := strconv.ParseUint(f, 10, 64)
		return n, err == nil
	}
	var d uint64
	if days != "" {
		var ok bool
		if d, ok = num(days); !ok {
			return 0, timeSpanForm
		}
	}
	h, okH := num(hoursField)
	m, okM := num(minutes)
	sec, okS := num(seconds)
	if !okH || !okM || !okS {
		return 0, timeSpanForm
	}
	if strings.Contains(secondsField, ".") {
		if fraction == "" || len(fraction) > 7 || strings.Trim(fraction, "0123456789") != "" {
			return 0, timeSpanForm
		}
		if strings.Trim(fraction, "0") != "" {
			return 0, "not a whole number of seconds (granularity 1 s)"
		}
	}
	switch {
	case days != "" && h > 23:
		return 0, "hours out of range 0-23 after a day part"
	case m > 59:
		return 0, "minutes out of range 0-59"
	case sec > 59:
		return 0, "seconds out of range 0-59"
	}
	total := ((d*24+h)*60+m)*60 + sec
	if total > uint64(limit/time.Second) {
		return 0, outOfRange
	}
	return time.Duration(total) * time.Second, ""
}

// CleanVirtualPath checks a virtual path as given on the command line and
// returns its canonical form: "" means "/", a trailing slash is dropped
// ("/api/" is "/api"). It must start with "/" and must not hold empty, "."
// or ".." segments, "?", "#", whitespace or control characters, since
// requests are matched on the raw request target byte for byte. The error
// is an *Error (errors.Is ErrInvalid) reading `virtual path="api": rule`.
func CleanVirtualPath(vpath string) (string, error) {
	clean, rule := cleanVirtualPath(vpath)
	if rule != "" {
		return "", &Error{Problems: []Problem{{Attr: "virtual path", Value: vpath, Rule: rule}}}
	}
	return clean, nil
}

func cleanVirtualPath(v string) (string, string) {
	if v == "" || v == "/" {
		return "/", ""
	}
	if v[0] != '/' {
		return "", `must start with "/"`
	}
	v = strings.TrimSuffix(v, "/")
	for _, r := range v {
		switch {
		case r == '?' || r == '#':
			return "", `must not contain "?" or "#"`
		case unicode.IsSpace(r) || unicode.IsControl(r):
			return "", "must not contain whitespace or control characters"
		}
	}
	for _, seg := range strings.Split(v[1:], "/") {
		switch seg {
		case "":
			return "", `must not contain an empty segment ("//")`
		case ".", "..":
			return "", `must not contain "." or ".." segments`
		}
	}
	return v, ""
}

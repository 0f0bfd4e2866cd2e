package configload

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// The app pool handler settings (issue 14). Unlike the reference's own
// boolean handler settings, which keep their default on a bad value as ANCM
// does, these are loopgate's: a bad value is an error with its line.

// Upper bounds of the app pool durations.
const (
	maxPeriodicRestartTime = 8760 * time.Hour // a year
	maxIdleTimeout         = 720 * time.Hour  // 30 days, IIS's 43200 minutes
	maxPing                = 24 * time.Hour
)

// poolSettingNames are the app pool handler settings, spelled as documented.
var poolSettingNames = []string{
	"periodicRestartTime", "periodicRestartRequests", "periodicRestartPrivateMemory", "periodicRestartSchedule",
	"idleTimeout", "startMode", "pingingEnabled", "pingPath", "pingInterval", "pingResponseTime",
	"queueLength", "userName", "groupName", "memoryLimit", "cpuLimit",
}

// poolSettings reads the app pool handler settings into s. line gives the
// line of a setting's first occurrence, by name in any case.
func (p *parser) poolSettings(s *AppSpec, line func(name string) int) {
	get := func(name string) (string, int, bool) {
		v, ok := s.HandlerSetting(name)
		return v, line(name), ok
	}
	duration := func(name string, limit time.Duration, min time.Duration, dst *time.Duration) {
		v, ln, ok := get(name)
		if !ok {
			return
		}
		d, rule := parseTimeSpanMax(v, limit)
		if rule == "" && d < min {
			rule = fmt.Sprintf("must be at least %s (pingingEnabled=\"false\" turns pinging off)", formatTimeSpan(min))
		}
		if rule != "" {
			p.fail(ln, name, v, rule)
			return
		}
		*dst = d
	}
	count := func(name string, lo, hi uint64, set func(uint64)) {
		v, ln, ok := get(name)
		if !ok {
			return
		}
		n, rule := parseUint(v, lo, hi)
		if rule != "" {
			p.fail(ln, name, v, rule)
			return
		}
		set(n)
	}

	duration("periodicRestartTime", maxPeriodicRestartTime, 0, &s.PeriodicRestartTime)
	count("periodicRestartRequests", 0, 4294967295, func(n uint64) { s.PeriodicRestartRequests = int64(n) })
	count("periodicRestartPrivateMemory", 0, 4294967295, func(n uint64) { s.PeriodicRestartPrivateMemory = int64(n) })
	if v, ln, ok := get("periodicRestartSchedule"); ok {
		times, dups, rule := parseSchedule(v)
		if rule != "" {
			p.fail(ln, "periodicRestartSchedule", v, rule)
		} else {
			s.PeriodicRestartSchedule = times
			for _, d := range dups {
				p.warn(ln, "periodicRestartSchedule", v, fmt.Sprintf("%s is listed more than once", d))
			}
		}
	}
	duration("idleTimeout", maxIdleTimeout, 0, &s.IdleTimeout)
	if v, ln, ok := get("startMode"); ok {
		switch t := strings.TrimSpace(v); {
		case strings.EqualFold(t, "OnDemand"):
			s.StartMode = OnDemand
		case strings.EqualFold(t, "AlwaysRunning"):
			s.StartMode = AlwaysRunning
		default:
			p.fail(ln, "startMode", v, "must be OnDemand or AlwaysRunning")
		}
	}
	if v, ln, ok := get("pingingEnabled"); ok {
		if b, rule := parseBool(v); rule != "" {
			p.fail(ln, "pingingEnabled", v, rule)
		} else {
			s.PingingEnabled = b
		}
	}
	pingPathLine := 0
	if v, ln, ok := get("pingPath"); ok {
		pingPathLine = ln
		if rule := pingPathRule(v); rule != "" {
			p.fail(ln, "pingPath", v, rule)
		} else {
			s.PingPath = v
		}
	}
	duration("pingInterval", maxPing, time.Second, &s.PingInterval)
	duration("pingResponseTime", maxPing, time.Second, &s.PingResponseTime)
	count("queueLength", 10, 65535, func(n uint64) { s.QueueLength = int(n) })
	for _, name := range []string{"userName", "groupName"} {
		v, ln, ok := get(name)
		if !ok || v == "" {
			continue
		}
		if rule := accountRule(v); rule != "" {
			p.fail(ln, name, v, rule)
		} else if name == "userName" {
			s.UserName = v
		} else {
			s.GroupName = v
		}
	}
	if v, ln, ok := get("memoryLimit"); ok {
		if n, rule := parseBytes(v); rule != "" {
			p.fail(ln, "memoryLimit", v, rule)
		} else {
			s.MemoryLimit = n
		}
	}
	count("cpuLimit", 0, 100000, func(n uint64) { s.CPULimit = int(n) })

	// Settings that make sense only together.
	if v, ln, ok := get("pingingEnabled"); ok && s.PingingEnabled && s.PingPath == "" {
		if _, set := s.HandlerSetting("pingPath"); !set {
			p.fail(ln, "pingingEnabled", v, "pingPath is required when pinging is on (the path to GET, e.g. /healthz)")
		}
	}
	if s.PingPath != "" && !s.PingingEnabled {
		p.warn(pingPathLine, "pingPath", s.PingPath, `has no effect: pingingEnabled is not "true"`)
	}
	if v, ln, ok := get("idleTimeout"); ok && s.IdleTimeout > 0 && s.StartMode == AlwaysRunning {
		p.warn(ln, "idleTimeout", v, "not applied with startMode AlwaysRunning (IIS would stop the idle process and start another at once)")
	}
	if v, ln, ok := get("periodicRestartPrivateMemory"); ok && s.MemoryLimit > 0 && s.PeriodicRestartPrivateMemory > 0 &&
		s.PeriodicRestartPrivateMemory*1024 >= s.MemoryLimit {
		p.warn(ln, "periodicRestartPrivateMemory", v, fmt.Sprintf("not below memoryLimit (%d KB): the app is killed at its limit before it is recycled", s.MemoryLimit/1024))
	}
}

// parseSchedule parses periodicRestartSchedule: a comma list of local times
// hh:mm or hh:mm:ss, returned as offsets from midnight, ascending and
// deduplicated, with the duplicates dropped (as written). Empty or blank is
// no schedule.
func parseSchedule(v string) (times []time.Duration, dups []string, rule string) {
	if strings.TrimSpace(v) == "" {
		return nil, nil, ""
	}
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, nil, "an empty item (a stray comma?); expected a comma list of local times hh:mm"
		}
		d, ok := parseClock(item)
		if !ok {
			return nil, nil, fmt.Sprintf("%q is not a local time hh:mm from 00:00 to 23:59", item)
		}
		if slices.Contains(times, d) {
			dups = append(dups, item)
			continue
		}
		times = append(times, d)
	}
	slices.Sort(times)
	return times, dups, ""
}

// parseClock parses h:mm, hh:mm or hh:mm:ss as a time of day.
func parseClock(s string) (time.Duration, bool) {
	fields := strings.Split(s, ":")
	if len(fields) < 2 || len(fields) > 3 {
		return 0, false
	}
	limits := []int{23, 59, 59}
	var d time.Duration
	for i, f := range fields {
		if len(f) < 1 || len(f) > 2 || (i > 0 && len(f) != 2) || strings.Trim(f, "0123456789") != "" {
			return 0, false
		}
		n, _ := strconv.Atoi(f)
		if n > limits[i] {
			return 0, false
		}
		d += time.Duration(n) * []time.Duration{time.Hour, time.Minute, time.Second}[i]
	}
	return d, true
}

// pingPathRule checks a pingPath: a request target as sent on the wire.
func pingPathRule(v string) string {
	switch {
	case !strings.HasPrefix(v, "/"):
		return `must start with "/" (the path to GET, e.g. /healthz)`
	case strings.IndexFunc(v, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r > unicode.MaxASCII }) >= 0:
		return "must not contain whitespace, control or non-ASCII characters (percent-encode them)"
	case strings.Contains(v, "#"):
		return `must not contain "#"`
	}
	return ""
}

// accountRule checks a userName or groupName: a name useradd would accept
// (letters, digits, "_", ".", "-", not starting with "-", an optional final
// "$", at most 32 characters) or a numeric id. Whether it exists is the
// supervisor's business: configload reads nothing of the system.
func accountRule(v string) string {
	const rule = `must be a name of letters, digits, "_", "." and "-" (not starting with "-", at most 32 characters) or a numeric id`
	body := strings.TrimSuffix(v, "$")
	if body == "" || len(v) > 32 || body[0] == '-' {
		return rule
	}
	for _, r := range body {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-') {
			return rule
		}
	}
	if strings.Trim(v, "0123456789") == "" {
		if _, err := strconv.ParseUint(v, 10, 32); err != nil || v == "4294967295" {
			return "a numeric id must be 0-4294967294"
		}
	}
	return ""
}

// parseBytes parses a memoryLimit: whole bytes, or a number with a K, M, G
// or T suffix in any case (powers of 1024, as systemd's MemoryMax=). 0 is
// no limit; anything else is at least 1M.
func parseBytes(v string) (int64, string) {
	const form = "expected bytes or a whole number with K, M, G or T (powers of 1024), e.g. 512M"
	s := strings.TrimSpace(v)
	shift := 0
	if s != "" {
		switch s[len(s)-1] {
		case 'k', 'K':
			shift = 10
		case 'm', 'M':
			shift = 20
		case 'g', 'G':
			shift = 30
		case 't', 'T':
			shift = 40
		}
		if shift > 0 {
			s = s[:len(s)-1]
		}
	}
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return 0, form
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > (1<<62)>>shift {
		return 0, "too large (at most 4194304T)"
	}
	b := int64(n << shift)
	if b != 0 && b < 1<<20 {
		return 0, "at least 1M (0 means no limit)"
	}
	return b, ""
}

// formatTimeSpan writes d as hh:mm:ss (hours may exceed 23).
func formatTimeSpan(d time.Duration) string {
	s := int64(d / time.Second)
	return fmt.Sprintf("%02d:%02d:%02d", s/3600, s/60%60, s%60)
}

// validatePool is Validate's part for the app pool settings.
func (s *AppSpec) validatePool(bad func(field, value, rule string), seconds func(field string, d, hi time.Duration)) {
	seconds("PeriodicRestartTime", s.PeriodicRestartTime, maxPeriodicRestartTime)
	seconds("IdleTimeout", s.IdleTimeout, maxIdleTimeout)
	for _, d := range []struct {
		field string
		d     time.Duration
	}{{"PingInterval", s.PingInterval}, {"PingResponseTime", s.PingResponseTime}} {
		if d.d < time.Second || d.d > maxPing || d.d%time.Second != 0 {
			bad(d.field, d.d.String(), fmt.Sprintf("must be whole seconds 1-%d", maxPing/time.Second))
		}
	}
	if s.PeriodicRestartRequests < 0 || s.PeriodicRestartRequests > 4294967295 {
		bad("PeriodicRestartRequests", fmt.Sprint(s.PeriodicRestartRequests), "out of range 0-4294967295")
	}
	if s.PeriodicRestartPrivateMemory < 0 || s.PeriodicRestartPrivateMemory > 4294967295 {
		bad("PeriodicRestartPrivateMemory", fmt.Sprint(s.PeriodicRestartPrivateMemory), "out of range 0-4294967295")
	}
	for i, d := range s.PeriodicRestartSchedule {
		if d < 0 || d >= 24*time.Hour || d%time.Second != 0 || (i > 0 && d <= s.PeriodicRestartSchedule[i-1]) {
			bad("PeriodicRestartSchedule", d.String(), "must be whole seconds within a day, ascending, without duplicates")
			break
		}
	}
	if s.StartMode > AlwaysRunning {
		bad("StartMode", fmt.Sprint(uint8(s.StartMode)), "must be OnDemand or AlwaysRunning")
	}
	if s.PingingEnabled && s.PingPath == "" {
		bad("PingPath", "", "required when PingingEnabled")
	} else if s.PingPath != "" {
		if rule := pingPathRule(s.PingPath); rule != "" {
			bad("PingPath", s.PingPath, rule)
		}
	}
	if s.QueueLength < 10 || s.QueueLength > 65535 {
		bad("QueueLength", fmt.Sprint(s.QueueLength), "out of range 10-65535")
	}
	for _, a := range []struct{ field, v string }{{"UserName", s.UserName}, {"GroupName", s.GroupName}} {
		if a.v != "" {
			if rule := accountRule(a.v); rule != "" {
				bad(a.field, a.v, rule)
			}
		}
	}
	if s.MemoryLimit < 0 || (s.MemoryLimit > 0 && s.MemoryLimit < 1<<20) || s.MemoryLimit > 1<<62 {
		bad("MemoryLimit", fmt.Sprint(s.MemoryLimit), "must be 0 (no limit) or 1048576-4611686018427387904 bytes")
	}
	if s.CPULimit < 0 || s.CPULimit > 100000 {
		bad("CPULimit", fmt.Sprint(s.CPULimit), "out of range 0-100000")
	}
}

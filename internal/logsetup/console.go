package logsetup

import (
	"fmt"
	"regexp"
)

// prepareConsole adjusts an event for the console format; the JSON format
// is left as it is. Two kinds of lines read badly there otherwise:
//
//   - access lines have no message (in JSON the fields say it all), so
//     they would print as a row of fields: the console shows
//     "GET /path 200 232B 1.234ms" as the message and drops those fields;
//   - a backend's output line (one with a "stream" field) often starts with
//     the backend's own timestamp, which would follow loopgate's: the
//     console drops that leading timestamp (JSON keeps the line whole).
func prepareConsole(evt map[string]any) error {
	if evt["event"] == "access" && evt["message"] == nil {
		evt["message"] = fmt.Sprintf("%v %v %v %vB %vms", evt["method"], evt["path"], evt["status"], evt["bytes"], evt["duration_ms"])
		for _, k := range []string{"event", "method", "path", "status", "bytes", "duration_ms"} {
			delete(evt, k)
		}
		return nil
	}
	if _, ok := evt["stream"]; ok {
		if msg, ok := evt["message"].(string); ok {
			if loc := leadingTimestamp.FindStringIndex(msg); loc != nil && loc[1] < len(msg) {
				evt["message"] = msg[loc[1]:]
			}
		}
	}
	return nil
}

// leadingTimestamp matches a date and time at the start of a line, with
// optional fractional seconds and zone, optionally in brackets, and the
// separator after it: "2026-12-07T08:55:26.123Z ", "[2026-12-07 08:55:26
// +0000] " (gunicorn), "2026-12-07 08:55:26,123 - " (Python logging),
// "2026/12/07 08:55:26 " (Go's log).
var leadingTimestamp = regexp.MustCompile(`^\[?\d{4}[-/]\d\d[-/]\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?: ?(?:Z|[+-]\d\d:?\d\d|UTC))?\]?(?:\s+-\s+|:\s+|\s+)`)

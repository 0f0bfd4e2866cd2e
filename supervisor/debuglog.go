package supervisor

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/loopgate/loopgate/configload"
	"github.com/rs/zerolog"
)

// debugSettings is the parsed form of DebugLevel (spec §5.4): a comma list
// whose items match by prefix, case-insensitively. Levels are cumulative
// (trace ⊃ info ⊃ warning ⊃ error); locations without a level mean info.
type debugSettings struct {
	level   zerolog.Level
	file    bool // write to the app's debug file
	console bool // write to loopgate's own log
}

func parseDebugLevel(s string) (debugSettings, bool) {
	var d debugSettings
	level, any := zerolog.Disabled, false
	for _, item := range strings.Split(s, ",") {
		item = strings.ToLower(strings.TrimSpace(item))
		if item == "" {
			continue
		}
		any = true
		switch {
		case strings.HasPrefix("error", item):
			level = min(level, zerolog.ErrorLevel)
		case strings.HasPrefix("warning", item):
			level = min(level, zerolog.WarnLevel)
		case strings.HasPrefix("info", item):
			level = min(level, zerolog.InfoLevel)
		case strings.HasPrefix("trace", item):
			level = min(level, zerolog.TraceLevel)
		case strings.HasPrefix("file", item):
			d.file = true
		case strings.HasPrefix("console", item), strings.HasPrefix("eventlog", item):
			// eventlog has no Linux equivalent: loopgate's log is the
			// closest thing an operator reads.
			d.console = true
		}
	}
	if !any {
		return d, false
	}
	if level == zerolog.Disabled {
		level = zerolog.InfoLevel
	}
	d.level = level
	return d, true
}

// diagLog is an app's diagnostic log (debugFile/debugLevel): loopgate's own
// account of what it does for that app, more detailed than the lifecycle
// events in the main log. Levels: lifecycle events at info/warn/error,
// command lines and environments at debug, readiness probes at trace.
type diagLog struct {
	log  zerolog.Logger // Disabled when there is no diagnostic log
	file *os.File
}

// openDiagLog builds the diagnostic log for spec. The file is opened for
// append with its parent directories created. Without DebugLevel but with a
// DebugFile, the level is info. A file that cannot be opened is reported
// and leaves the console location (if any) working.
func openDiagLog(spec *configload.AppSpec, main zerolog.Logger) (diagLog, error) {
	d, ok := parseDebugLevel(spec.DebugLevel)
	if !ok && spec.DebugFile == "" {
		return diagLog{log: zerolog.Nop()}, nil
	}
	if !ok {
		d = debugSettings{level: zerolog.InfoLevel, file: true}
	}
	if spec.DebugFile != "" {
		d.file = true
	}
	var ws []io.Writer
	var dl diagLog
	var err error
	if d.file && spec.DebugFile != "" {
		if mkErr := os.MkdirAll(filepath.Dir(spec.DebugFile), 0o755); mkErr != nil {
			err = fmt.Errorf("debug log %s: %w", spec.DebugFile, mkErr)
		} else if f, openErr := os.OpenFile(spec.DebugFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); openErr != nil {
			err = fmt.Errorf("debug log %s: %w", spec.DebugFile, openErr)
		} else {
			dl.file = f
			ws = append(ws, f)
		}
	}
	if d.console {
		ws = append(ws, mainWriter{main})
	}
	if len(ws) == 0 {
		dl.log = zerolog.Nop()
		return dl, err
	}
	dl.log = zerolog.New(zerolog.MultiLevelWriter(ws...)).Level(d.level).With().
		Timestamp().Str("app", spec.VirtualPath).Logger()
	return dl, err
}

func (d diagLog) close() {
	if d.file != nil {
		d.file.Close()
	}
}

// mainWriter forwards already-encoded diagnostic lines into loopgate's log
// as raw JSON under the field "diag", so they survive any log format.
type mainWriter struct{ log zerolog.Logger }

func (w mainWriter) Write(p []byte) (int, error) {
	w.log.Info().RawJSON("diag", trimNL(p)).Msg("app diagnostic")
	return len(p), nil
}

func trimNL(p []byte) []byte {
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	return p
}

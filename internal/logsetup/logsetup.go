package logsetup

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// ErrUsage marks a bad --log-format or --log-level value (a usage error: the
// command exits 2).
var ErrUsage = errors.New("bad log option")

// Formats and levels accepted on the command line.
const (
	FormatJSON    = "json"
	FormatConsole = "console"
)

// Options says where logs go and how they look.
type Options struct {
	// Format is FormatJSON, FormatConsole or "" for automatic: console when
	// the destination is a terminal, JSON otherwise.
	Format string
	// Level is trace, debug, info, warn or error. Default ("") info.
	Level string
	// File is a log file to append to (created with mode 0640). Default ("")
	// none: logs go to Stderr. Reopen starts a new file at the same path.
	File string
	// Stderr is the destination without File. Default (nil) os.Stderr.
	Stderr io.Writer
}

// ParseLevel turns a --log-level value into a zerolog level.
func ParseLevel(s string) (zerolog.Level, error) {
	switch s {
	case "trace":
		return zerolog.TraceLevel, nil
	case "debug":
		return zerolog.DebugLevel, nil
	case "", "info":
		return zerolog.InfoLevel, nil
	case "warn":
		return zerolog.WarnLevel, nil
	case "error":
		return zerolog.ErrorLevel, nil
	}
	return zerolog.NoLevel, fmt.Errorf("%w: --log-level %q: want trace, debug, info, warn or error", ErrUsage, s)
}

// CheckFormat validates a --log-format value.
func CheckFormat(s string) error {
	switch s {
	case "", FormatJSON, FormatConsole:
		return nil
	}
	return fmt.Errorf("%w: --log-format %q: want json or console", ErrUsage, s)
}

// New returns the logger described by o and the Sink it writes to. Every
// event carries a timestamp. Close the Sink when done with the logger.
func New(o Options) (zerolog.Logger, *Sink, error) {
	level, err := ParseLevel(o.Level)
	if err != nil {
		return zerolog.Nop(), nil, err
	}
	if err := CheckFormat(o.Format); err != nil {
		return zerolog.Nop(), nil, err
	}
	sink := &Sink{path: o.File, w: o.Stderr}
	if sink.w == nil {
		sink.w = os.Stderr
	}
	if o.File != "" {
		f, err := openLog(o.File)
		if err != nil {
			return zerolog.Nop(), nil, err
		}
		sink.f, sink.w = f, f
	}
	terminal := isTerminal(sink.w)
	var out io.Writer = sink
	if o.Format == FormatConsole || (o.Format == "" && terminal) {
		out = zerolog.ConsoleWriter{Out: sink, NoColor: !terminal, TimeFormat: "15:04:05.000", FormatPrepare: prepareConsole}
	}
	return zerolog.New(out).Level(level).With().Timestamp().Logger(), sink, nil
}

// Sink is the log destination: stderr or a reopenable file. It is safe for
// concurrent use; each Write is passed on whole, so JSON lines never
// interleave.
type Sink struct {
	mu   sync.Mutex
	path string // "" when writing to stderr
	f    *os.File
	w    io.Writer
}

// Write writes one log event.
func (s *Sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	n, err := s.w.Write(p)
	s.mu.Unlock()
	return n, err
}

// Path is the log file's path, or "" when logging to stderr.
func (s *Sink) Path() string { return s.path }

// Reopen opens the log file's path anew (after logrotate renamed it) and
// closes the old file. If the path cannot be opened, logging continues to
// the old file and the error says why. Without a log file it does nothing.
func (s *Sink) Reopen() error {
	if s.path == "" {
		return nil
	}
	f, err := openLog(s.path)
	if err != nil {
		return err
	}
	s.mu.Lock()
	old := s.f
	s.f, s.w = f, f
	s.mu.Unlock()
	if err := old.Close(); err != nil {
		return fmt.Errorf("closing old log file: %w", err)
	}
	return nil
}

// Close closes the log file, if any. Later writes fail.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	return s.f.Close()
}

func openLog(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("opening log file: %w", err)
	}
	return f, nil
}

// isTerminal reports whether w is a terminal (a TTY file descriptor).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

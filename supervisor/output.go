package supervisor

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// output takes a backend's stdout and stderr (DESIGN.md §4): into the stdout
// log file when stdoutLogEnabled and the file could be created, otherwise
// line by line into loopgate's log. A file that stops taking writes (disk
// full, I/O error) is closed with one warning and the rest of the output is
// relayed instead, so nothing is lost silently. Either way the first
// outputCaptureLimit bytes are kept for a start-failure report. Safe for
// concurrent use.
type output struct {
	log zerolog.Logger // has app and pid fields

	mu      sync.Mutex
	file    *os.File // nil: relay to log
	capture []byte
	done    chan struct{} // closed when both streams reached EOF
}

// stdoutLogName is <base>_<yyyyMMddHHmmss>_<pid>.log, UTC, as DESIGN.md §4
// says (the reference uses its own pid; the backend's is what an operator
// looks for).
func stdoutLogName(base string, t time.Time, pid int) string {
	return base + "_" + t.UTC().Format("20060102150405") + "_" + strconv.Itoa(pid) + ".log"
}

// openStdoutLog creates the stdout log file and its parent directories.
func openStdoutLog(base string, t time.Time, pid int) (*os.File, error) {
	name := stdoutLogName(base, t, pid)
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return nil, fmt.Errorf("stdout log %s: %w", name, err)
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("stdout log %s: %w", name, err)
	}
	return f, nil
}

// startOutput starts the readers of proc's pipes. They end at EOF, when the
// last process holding the pipes (the backend or a child of it) is gone.
func startOutput(proc Proc, log zerolog.Logger, file *os.File) *output {
	o := &output{log: log, file: file, done: make(chan struct{})}
	streams := []struct {
		r    io.ReadCloser
		name string
	}{{proc.Stdout(), "stdout"}, {proc.Stderr(), "stderr"}}
	var wg sync.WaitGroup
	for _, s := range streams {
		if s.r == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.read(s.r, s.name)
		}()
	}
	go func() {
		wg.Wait()
		o.mu.Lock()
		if o.file != nil {
			o.file.Close()
		}
		o.mu.Unlock()
		close(o.done)
	}()
	return o
}

func (o *output) read(r io.ReadCloser, stream string) {
	defer r.Close()
	br := bufio.NewReaderSize(r, 16<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			o.line(line, stream)
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

func (o *output) line(line []byte, stream string) {
	o.mu.Lock()
	if n := outputCaptureLimit - len(o.capture); n > 0 {
		o.capture = append(o.capture, line[:min(n, len(line))]...)
	}
	relay := o.file == nil
	if !relay {
		if _, err := o.file.Write(line); err != nil {
			o.log.Warn().Err(err).Str("file", o.file.Name()).
				Msg("could not write the stdout log file; relaying the rest of the output into this log")
			o.file.Close()
			o.file, relay = nil, true
		}
	}
	o.mu.Unlock()
	if relay {
		o.log.Info().Str("stream", stream).Msg(string(bytes.TrimRight(line, "\r\n")))
	}
}

// captured returns the output kept so far, after waiting up to wait for the
// streams to end (a dying process's last words are what explain its death).
func (o *output) captured(wait time.Duration) []byte {
	if o == nil {
		return nil
	}
	t := time.NewTimer(wait)
	select {
	case <-o.done:
	case <-t.C:
	}
	t.Stop()
	o.mu.Lock()
	defer o.mu.Unlock()
	return bytes.Clone(o.capture)
}

package supervisor

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
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
	rot rotation

	mu      sync.Mutex
	file    *os.File // nil: relay to log
	first   string   // the first file's name; segments are named after it
	seg     int      // segments started after the first
	written int64    // bytes in the current file
	midLine bool     // the last write did not end a line
	pending bool     // a rotation was asked for (SIGUSR1) and waits for a line's end
	capture []byte
	done    chan struct{} // closed when both streams reached EOF
}

// rotation is how a stdout log is cut and pruned: handler settings
// stdoutLogMaxBytes and stdoutLogMaxFiles (0: never), and the app's
// register of open files, which pruning never deletes.
type rotation struct {
	base     string // stdoutLogFile
	maxBytes int64
	maxFiles int
	logs     *stdoutLogs
}

// stdoutLogs are the stdout log files an app's processes are writing, by
// name. Safe for concurrent use; the zero value is ready.
type stdoutLogs struct {
	mu   sync.Mutex
	open map[string]*output
}

func (l *stdoutLogs) add(name string, o *output) {
	l.mu.Lock()
	if l.open == nil {
		l.open = map[string]*output{}
	}
	l.open[name] = o
	l.mu.Unlock()
}

func (l *stdoutLogs) remove(name string) {
	l.mu.Lock()
	delete(l.open, name)
	l.mu.Unlock()
}

func (l *stdoutLogs) isOpen(name string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.open[name]
	return ok
}

// rotateAll asks every open stdout log to start a new file at its next
// line boundary (SIGUSR1).
func (l *stdoutLogs) rotateAll() {
	l.mu.Lock()
	outs := make([]*output, 0, len(l.open))
	for _, o := range l.open {
		outs = append(outs, o)
	}
	l.mu.Unlock()
	for _, o := range outs {
		o.requestRotate()
	}
}

// segmentName is the name of segment n (n >= 1) of a stdout log whose first
// file is first: <base>_<start>_<pid>.<n>.log.
func segmentName(first string, n int) string {
	return strings.TrimSuffix(first, ".log") + "." + strconv.Itoa(n) + ".log"
}

// pruneStdoutLogs deletes the oldest of the app's stdout log files
// (<base>_*.log, by modification time) beyond keep, never one that is
// open. Errors are logged, not returned: pruning must not stop logging.
func pruneStdoutLogs(base string, keep int, logs *stdoutLogs, log zerolog.Logger) {
	if keep <= 0 {
		return
	}
	dir, prefix := filepath.Dir(base), filepath.Base(base)+"_"
	ents, err := os.ReadDir(dir)
	if err != nil {
		log.Warn().Err(err).Msg("stdoutLogMaxFiles: cannot list the stdout log directory")
		return
	}
	type file struct {
		name string
		mod  time.Time
	}
	var files []file
	for _, e := range ents {
		if !e.Type().IsRegular() || !strings.HasPrefix(e.Name(), prefix) || !strings.HasSuffix(e.Name(), ".log") {
			continue
		}
		if fi, err := e.Info(); err == nil {
			files = append(files, file{filepath.Join(dir, e.Name()), fi.ModTime()})
		}
	}
	sort.Slice(files, func(i, j int) bool {
		if !files[i].mod.Equal(files[j].mod) {
			return files[i].mod.Before(files[j].mod)
		}
		return files[i].name < files[j].name
	})
	excess := len(files) - keep
	for _, f := range files {
		if excess <= 0 {
			break
		}
		if logs.isOpen(f.name) {
			continue
		}
		if err := os.Remove(f.name); err != nil {
			log.Warn().Err(err).Str("file", f.name).Msg("stdoutLogMaxFiles: cannot delete an old stdout log file")
			continue
		}
		excess--
	}
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
func startOutput(proc Proc, log zerolog.Logger, file *os.File, rot rotation) *output {
	o := &output{log: log, file: file, rot: rot, done: make(chan struct{})}
	if file != nil && rot.logs != nil {
		o.first = file.Name()
		rot.logs.add(o.first, o)
		pruneStdoutLogs(rot.base, rot.maxFiles, rot.logs, log)
	}
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
			if o.rot.logs != nil {
				o.rot.logs.remove(o.file.Name())
			}
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
		if !o.midLine && o.written > 0 && (o.pending || (o.rot.maxBytes > 0 && o.written+int64(len(line)) > o.rot.maxBytes)) {
			o.rotateLocked()
		}
		n, err := o.file.Write(line)
		o.written += int64(n)
		o.midLine = line[len(line)-1] != '\n'
		if err != nil {
			o.log.Warn().Err(err).Str("file", o.file.Name()).
				Msg("could not write the stdout log file; relaying the rest of the output into this log")
			o.file.Close()
			if o.rot.logs != nil {
				o.rot.logs.remove(o.file.Name())
			}
			o.file, relay = nil, true
		}
	}
	o.mu.Unlock()
	if relay {
		o.log.Info().Str("stream", stream).Msg(string(bytes.TrimRight(line, "\r\n")))
	}
}

// rotateLocked starts the next segment of the stdout log, between two
// lines, so no line is split or lost: the next line goes to the new file.
// If the new file cannot be created the current one goes on (and the next
// try comes after another stdoutLogMaxBytes). o.mu is held.
func (o *output) rotateLocked() {
	o.pending = false
	name := segmentName(o.first, o.seg+1)
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		o.log.Warn().Err(err).Str("file", o.file.Name()).Msg("could not start a new stdout log file; writing on in this one")
		o.written = 0
		return
	}
	old := o.file
	o.file, o.seg, o.written = f, o.seg+1, 0
	o.rot.logs.add(name, o)
	old.Close()
	o.rot.logs.remove(old.Name())
	o.log.Info().Str("event", "stdout_log_rotate").Str("file", name).Str("previous", old.Name()).
		Msg("stdout log continues in " + name)
	pruneStdoutLogs(o.rot.base, o.rot.maxFiles, o.rot.logs, o.log)
}

// requestRotate has the stdout log start a new file at the next line
// boundary (SIGUSR1); a file with nothing written yet is kept.
func (o *output) requestRotate() {
	o.mu.Lock()
	if o.file != nil && o.written > 0 {
		if o.midLine {
			o.pending = true
		} else {
			o.rotateLocked()
		}
	}
	o.mu.Unlock()
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

package harness

import (
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/loopgate/loopgate/internal/selfsigned"
)

// StartProc starts cmd as a server that listens at addr, pinned to cpu,
// and returns once it accepts connections.
func StartProc(name string, cmd *exec.Cmd, addr string, cpu int) (*Proc, error) {
	p, err := start(name, cmd, cpu)
	if err != nil {
		return nil, err
	}
	p.Addr = addr
	if err := p.waitListening(); err != nil {
		return nil, err
	}
	return p, nil
}

// StopCmd ends a server with SIGTERM and waits for it (bounded by its
// WaitDelay after a SIGKILL if it does not exit within 10 s).
func StopCmd(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// WriteCert writes a self-signed certificate for 127.0.0.1 (h2load does
// not verify it) to dir/cert.pem and dir/key.pem.
func WriteCert(dir string) error {
	return selfsigned.Write(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), 1)
}

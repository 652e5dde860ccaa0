package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Proc is one running cxbridge process; its stdout and stderr go to a log
// file the harness scans at the end.
type Proc struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	log     *os.File
	done    chan struct{}
	err     error // set before done is closed
	killed  bool  // by the harness (Kill or Stop)
	mu      sync.Mutex
}

// start runs bin with args and env (added to the harness's own environment,
// minus every CXBRIDGE_ variable so that nothing leaks in from the shell).
func start(bin, dir, name string, args, env []string) (*Proc, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(f, "### %s %s %q\n", time.Now().Format(time.RFC3339Nano), name, args)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(cleanEnv(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the harness
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, LogPath: logPath, cmd: cmd, log: f, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !bytes.HasPrefix([]byte(kv), []byte("CXBRIDGE_")) {
			out = append(out, kv)
		}
	}
	return out
}

// Kill sends SIGKILL and waits for the process to end.
func (p *Proc) Kill() {
	p.mu.Lock()
	p.killed = true
	p.mu.Unlock()
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Stop sends SIGTERM and waits up to timeout for a clean exit (status 0).
func (p *Proc) Stop(timeout time.Duration) error {
	p.mu.Lock()
	p.killed = true // by the harness
	p.mu.Unlock()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("%s exited after SIGTERM: %w (log %s)", p.Name, p.err, p.LogPath)
		}
		return nil
	case <-time.After(timeout):
		p.Kill()
		return fmt.Errorf("%s did not exit within %v of SIGTERM (log %s)", p.Name, timeout, p.LogPath)
	}
}

// Wait waits for the process to exit by itself; an exit status other than
// 0 is an error.
func (p *Proc) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("%s: %w (log %s)", p.Name, p.err, p.LogPath)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s still running: %w", p.Name, context.Cause(ctx))
	}
}

// Exited reports whether the process ended without the harness killing
// or stopping it, and how.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.killed {
			return false, nil
		}
		if p.err == nil {
			return true, errors.New("exit status 0")
		}
		return true, p.err
	default:
		return false, nil
	}
}

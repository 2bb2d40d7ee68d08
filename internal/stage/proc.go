package stage

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Proc is one process of the stack: a binary with its arguments and
// environment, its output appended to a log file across restarts.
type Proc struct {
	Name string
	Path string
	Args []string
	Env  []string // added to a minimal environment (PATH, HOME)
	Log  string   // output file

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	starts int
}

// Start runs the process; it is an error if it is already running.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("%s: already running", p.Name)
	}
	out, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("%s: log: %w", p.Name, err)
	}
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, p.Env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("%s: start: %w", p.Name, err)
	}
	p.starts++
	fmt.Fprintf(out, "---- stage: %s start #%d, pid %d, %s\n", p.Name, p.starts, cmd.Process.Pid, time.Now().UTC().Format(time.RFC3339Nano))
	exited := make(chan struct{})
	p.cmd, p.exited = cmd, exited
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(out, "---- stage: %s exited: %v\n", p.Name, err)
		out.Close()
		p.mu.Lock()
		if p.cmd == cmd {
			p.cmd = nil
		}
		p.mu.Unlock()
		close(exited)
	}()
	return nil
}

// Running reports whether the process is up.
func (p *Proc) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// Pid is the running process's id, 0 when it is not running.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Kill sends SIGKILL (kill -9: no shutdown code runs) and waits until the
// process is gone. A process that is not running is not an error.
func (p *Proc) Kill() error { return p.signal(syscall.SIGKILL, 10*time.Second) }

// Stop sends SIGTERM and waits up to timeout, then kills.
func (p *Proc) Stop(timeout time.Duration) error {
	if err := p.signal(syscall.SIGTERM, timeout); err == nil {
		return nil
	}
	return p.Kill()
}

var errStillRunning = errors.New("still running")

func (p *Proc) signal(sig syscall.Signal, wait time.Duration) error {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
		return nil
	case <-time.After(wait):
		return fmt.Errorf("%s: %w %s after %v", p.Name, errStillRunning, wait, sig)
	}
}

// Restart stops the process gracefully and starts it again.
func (p *Proc) Restart(timeout time.Duration) error {
	if err := p.Stop(timeout); err != nil {
		return err
	}
	return p.Start()
}

// Starts is how many times the process was started.
func (p *Proc) Starts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.starts
}

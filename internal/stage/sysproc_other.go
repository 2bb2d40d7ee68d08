//go:build !linux

package stage

import "syscall"

// sysProcAttr puts each process in its own group (Ctrl-C in the terminal
// reaches the stage command only, which stops them in order).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

package stage

import "syscall"

// sysProcAttr puts each process in its own group (Ctrl-C in the terminal
// reaches the stage command only, which stops them in order) and kills it
// when the stage command dies without stopping it (a test that timed out,
// a kill -9), so no nats-server or connector outlives the stack.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

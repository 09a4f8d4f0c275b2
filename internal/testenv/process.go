package testenv

import (
	"fmt"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// StopGrace is how long a Process stopped at the end of its test has to
// exit after SIGTERM before its process group is killed.
const StopGrace = 10 * time.Second

// Process is a child process a test started with StartProcess. It leads a
// process group of its own, so whatever it starts in turn (a shell's
// commands, a browser's renderers, a gateway's restart script) is stopped
// with it, and it is killed by the kernel if the test binary dies first.
type Process struct {
	cmd  *exec.Cmd
	pgid int
	done chan struct{}
	err  error // Wait's result; read only after done is closed
}

// StartProcess starts cmd as the leader of a new process group, with
// SIGKILL as its parent-death signal, and stops the group (Stop with
// StopGrace) when the test ends. Fields of cmd.SysProcAttr other than
// Setpgid, Pgid and Pdeathsig are kept. The caller must not call cmd.Wait:
// the Process waits for it.
//
// What each part covers:
//   - The process group: Stop and Kill signal the whole group, so a test
//     that ends normally (or fails) leaves neither the child nor its
//     descendants running, as long as they stay in the group (a
//     descendant that calls setsid or setpgid leaves it).
//   - The parent-death signal (Linux): when the test binary itself dies,
//     SIGKILLed by CI or ended by `go test -timeout`, no cleanup runs;
//     the kernel then sends SIGKILL to the direct child. It reaches only
//     the direct child: its own children are orphaned, not killed. The
//     kernel also clears the setting when the child's credentials change
//     (setuid, a set-user-ID binary), so a child that must run as another
//     user should get cmd.SysProcAttr.Credential (set before the signal
//     is) instead of going through chroot --userspec, su or sudo.
//
// The kernel sends the parent-death signal when the thread that forked
// the child ends, not the process, and the Go runtime ends a thread when a
// goroutine locked to it exits. So the child is forked on a goroutine of
// its own, locked to its thread until the child has been waited for: no
// other goroutine ever runs there, and the thread outlives the child
// unless the whole process dies, which is when the signal must come.
func StartProcess(t testing.TB, cmd *exec.Cmd) (*Process, error) {
	t.Helper()
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pgid = 0
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	p := &Process{cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends with this goroutine, after the
		// child has been reaped.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	// With Setpgid and Pgid 0 the group's ID is the leader's PID.
	p.pgid = cmd.Process.Pid
	t.Cleanup(func() { p.Stop(StopGrace) })
	return p, nil
}

// Pid is the PID of the process (the leader of its group).
func (p *Process) Pid() int { return p.pgid }

// Done is closed once the process has exited and its output has been
// copied.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits for the process to exit, then kills what is left of its
// group, and returns cmd.Wait's result.
func (p *Process) Wait() error {
	<-p.done
	p.Kill()
	return p.err
}

// Signal sends sig to the process only, not its group (SIGHUP to reload,
// for instance).
func (p *Process) Signal(sig syscall.Signal) error {
	return p.cmd.Process.Signal(sig)
}

// Stop ends the process group gracefully: SIGTERM to the group, then,
// once the process has exited or grace has passed, SIGKILL to whatever
// is left of the group. It waits for the process to exit; calling it
// again, or after Kill, does no harm.
func (p *Process) Stop(grace time.Duration) {
	select {
	case <-p.done:
	default:
		_ = syscall.Kill(-p.pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
		}
	}
	p.Kill()
}

// Kill sends SIGKILL to the process group, as a crash or the OOM killer
// would end a process (no shutdown runs), and waits for the process to
// exit. Members of the group that outlived the process are killed too:
// the kernel does not hand out the group's ID again while one of them is
// alive. Once none is, the ID is free, and the signal could reach another
// group only if the kernel's PIDs wrapped around to it since the process
// exited and that process led a group of its own.
func (p *Process) Kill() {
	_ = syscall.Kill(-p.pgid, syscall.SIGKILL)
	<-p.done
}

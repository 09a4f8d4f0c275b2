package testenv

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// procStat is what /proc/PID/stat says of a process: its state letter and
// its start time (in clock ticks since boot), which tells it apart from a
// later process given the same PID.
type procStat struct {
	state byte
	start string
}

// readStat reads /proc/pid/stat; ok is false once the process is reaped.
func readStat(pid int) (procStat, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, false
	}
	// The command name, in parentheses, may hold spaces: fields are
	// counted after its closing parenthesis (state is field 3, start time
	// field 22).
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return procStat{}, false
	}
	return procStat{state: f[0][0], start: f[19]}, true
}

// alive returns the process's identity, failing the test if pid is not a
// live process.
func alive(t *testing.T, pid int, what string) procStat {
	t.Helper()
	s, ok := readStat(pid)
	if !ok || s.state == 'Z' || s.state == 'X' {
		t.Fatalf("%s (PID %d) is not running", what, pid)
	}
	return s
}

// gone reports whether the process s identified has ended: reaped, a
// zombie (an orphan's reaper may be slow, or absent in a container), or
// its PID now another process's.
func gone(pid int, s procStat) bool {
	now, ok := readStat(pid)
	return !ok || now.start != s.start || now.state == 'Z' || now.state == 'X'
}

// awaitGone waits until the process has ended. SIGKILL is delivered at
// once, but the process ends when the kernel next runs it; the bound only
// turns a process that survived into a failure instead of a hang.
func awaitGone(t *testing.T, pid int, s procStat, what string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !gone(pid, s); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s (PID %d) is still running", what, pid)
		}
	}
}

// readPID reads one line holding a PID.
func readPID(t *testing.T, r *bufio.Reader) int {
	t.Helper()
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read a PID: %v (read %q)", err, line)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("read a PID: %v", err)
	}
	return pid
}

// TestStopKillsTheProcessGroup starts a shell that starts a grandchild and
// stops it with Stop: the shell and the grandchild are both gone, whether
// the shell ignores SIGTERM (the group is killed after the grace period)
// or the grandchild does and outlives the shell (what is left of the
// group is killed once the shell exited).
func TestStopKillsTheProcessGroup(t *testing.T) {
	sh := Tool(t, "sh")
	for _, tc := range []struct{ name, script string }{
		{"the child ignores SIGTERM", `trap '' TERM; sleep 1000 & echo $!; wait`},
		// The grandchild reports its PID once it ignores SIGTERM.
		{"the grandchild ignores SIGTERM", `sh -c 'trap "" TERM; echo $$; exec sleep 1000' & wait`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, w, err := os.Pipe()
			Must(t, err, "pipe")
			defer r.Close()
			cmd := exec.Command(sh, "-c", tc.script)
			cmd.Stdout = w
			p, err := StartProcess(t, cmd)
			w.Close()
			Must(t, err, "start the shell")
			grandchild := readPID(t, bufio.NewReader(r))
			child := alive(t, p.Pid(), "the shell")
			grand := alive(t, grandchild, "the grandchild")

			p.Stop(100 * time.Millisecond)

			awaitGone(t, p.Pid(), child, "the shell")
			awaitGone(t, grandchild, grand, "the grandchild")
		})
	}
}

// parentRole makes the test binary, re-executed by
// TestChildDiesWithItsParent, act as the parent.
const parentRole = "CAIRN_TESTENV_PROCESS_PARENT"

// TestChildDiesWithItsParent re-executes the test binary as a parent that
// starts a child with StartProcess and then blocks; the test SIGKILLs the
// parent, so no cleanup of the parent's runs, and the child must die too
// (its parent-death signal). The parent calls StartProcess from a
// goroutine locked to its thread that then exits, ending the thread
// before the test kills the parent: the child is alive after that,
// because StartProcess forks on a thread of its own.
func TestChildDiesWithItsParent(t *testing.T) {
	if os.Getenv(parentRole) == "1" {
		actAsParent(t)
		return
	}
	sleep := Tool(t, "sleep")
	parent := exec.Command(os.Args[0], "-test.run=^TestChildDiesWithItsParent$", "-test.count=1")
	parent.Env = append(os.Environ(), parentRole+"=1", "CAIRN_TESTENV_SLEEP="+sleep)
	out, err := parent.StdoutPipe()
	Must(t, err, "parent's stdout")
	var stderr SyncBuffer
	parent.Stderr = &stderr
	// The parent blocks reading stdin; closing it ends a parent the test
	// failed to kill.
	stdin, err := parent.StdinPipe()
	Must(t, err, "parent's stdin")
	defer stdin.Close()
	Must(t, parent.Start(), "start the parent")
	defer func() { _ = parent.Process.Kill(); _ = parent.Wait() }()

	pid := readPID(t, bufio.NewReader(out))
	child := alive(t, pid, "the child after its starter's thread ended")

	Must(t, parent.Process.Signal(syscall.SIGKILL), "SIGKILL the parent")
	_ = parent.Wait()
	awaitGone(t, pid, child, "the child of the SIGKILLed parent")
	if t.Failed() {
		t.Logf("parent's stderr:\n%s", stderr.String())
	}
}

// actAsParent starts `sleep 1000` with StartProcess from a goroutine that
// locks its thread and exits without unlocking it (so the runtime ends the
// thread), waits until that thread is gone, prints the child's PID and
// blocks until stdin closes.
func actAsParent(t *testing.T) {
	type started struct {
		p   *Process
		tid int
		err error
	}
	ch := make(chan started, 1)
	go func() {
		runtime.LockOSThread()
		p, err := StartProcess(t, exec.Command(os.Getenv("CAIRN_TESTENV_SLEEP"), "1000"))
		ch <- started{p, syscall.Gettid(), err}
	}()
	s := <-ch
	if s.err != nil {
		t.Fatal(s.err)
	}
	// The runtime ends a locked thread, except the process's main thread,
	// which it parks instead.
	task := filepath.Join("/proc/self/task", strconv.Itoa(s.tid))
	for deadline := time.Now().Add(30 * time.Second); s.tid != os.Getpid(); time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(task); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("thread %d of the exited locked goroutine did not end", s.tid)
		}
	}
	select {
	case <-s.p.Done():
		t.Fatal("the child died with the thread of the goroutine that started it")
	default:
	}
	fmt.Println(s.p.Pid())
	_, _ = bufio.NewReader(os.Stdin).ReadString(0)
}

package backup

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// startSSHD runs an OpenSSH server on a loopback port for the test, with
// its own host key, configuration and one authorized client key, and
// returns the ssh command rsync should use and the user@host to reach.
func startSSHD(t *testing.T) (sshCmd, userHost string) {
	t.Helper()
	for _, tool := range []string{"/usr/sbin/sshd", "ssh", "ssh-keygen", "rsync"} {
		if _, err := exec.LookPath(tool); err != nil {
			if testenv.RequireServices() {
				t.Fatalf("%s is required (CAIRN_REQUIRE_SERVICES=1; apt-get install openssh-server rsync): %v", tool, err)
			}
			t.Skipf("%s not installed: %v", tool, err)
		}
	}
	u, err := user.Current()
	testenv.Must(t, err, "current user")
	dir := t.TempDir()
	keygen := func(path string) {
		out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path).CombinedOutput()
		if err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
	}
	keygen(filepath.Join(dir, "host"))
	keygen(filepath.Join(dir, "client"))
	pub, err := os.ReadFile(filepath.Join(dir, "client.pub"))
	testenv.Must(t, err, "client key")
	testenv.Must(t, os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600), "authorized keys")
	port := testenv.Port(t)
	config := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s/host
AuthorizedKeysFile %s/authorized_keys
PidFile %s/sshd.pid
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
`, port, dir, dir, dir)
	testenv.Must(t, os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(config), 0o600), "sshd config")
	// sshd wants its privilege-separation directory.
	_ = os.MkdirAll("/run/sshd", 0o755)
	cmd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
	var logs strings.Builder
	cmd.Stderr = &logs
	proc, err := testenv.StartProcess(t, cmd)
	testenv.Must(t, err, "start sshd")
	t.Cleanup(proc.Kill)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not listen: %s", logs.String())
		}
	}
	sshCmd = fmt.Sprintf("ssh -p %d -i %s/client -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes", port, dir)
	return sshCmd, u.Username + "@127.0.0.1"
}

// newSSHRsyncTarget is an rsync target over SSH to an sshd on loopback.
func newSSHRsyncTarget(t *testing.T) Target {
	sshCmd, userHost := startSSHD(t)
	return Rsync{Dest: userHost + ":" + t.TempDir() + "/dest", SSH: sshCmd, Spool: t.TempDir()}
}

func TestRsyncOverSSHTarget(t *testing.T) { runTargetSuite(t, newSSHRsyncTarget) }

// TestRsyncOverSSHRoundTrip takes a backup over SSH and restores it.
func TestRsyncOverSSHRoundTrip(t *testing.T) {
	ctx := context.Background()
	src, dst := backends["sqlite"](t), backends["sqlite"](t)
	seed(t, src, "", 20)
	tg := newSSHRsyncTarget(t)
	_, _, err := Run(ctx, tg, Options{Store: src, Key: testKey})
	testenv.Must(t, err, "backup over ssh")
	p, err := Fetch(ctx, tg, "latest", t.TempDir())
	testenv.Must(t, err, "fetch over ssh")
	_, err = Restore(ctx, p, RestoreOptions{Store: dst, Key: testKey})
	testenv.Must(t, err, "restore")
	sameDump(t, "restored", dump(t, dst), dump(t, src))
}

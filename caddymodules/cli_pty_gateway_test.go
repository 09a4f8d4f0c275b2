package caddymodules_test

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/store/open"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// onTerminal runs the binary on a pseudo-terminal (stdin, stdout and
// stderr), answers the first prompt ending in prompt with answer, and
// returns everything the terminal showed and the exit status.
func onTerminal(t *testing.T, env []string, prompt, answer string, args ...string) (string, int) {
	t.Helper()
	bin := builder.Binary(t) // built before the clock starts
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(append(os.Environ(), "CAIRN_BACKUP_KEY=", "CAIRN_AUDIT_KEY="), env...)
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 120})
	testenv.Must(t, err, "start on a pty")
	defer tty.Close()
	var seen strings.Builder
	r := bufio.NewReader(tty)
	answered := prompt == ""
	for {
		b, err := r.ReadByte()
		if err != nil {
			break // EIO once the process closed its side
		}
		seen.WriteByte(b)
		if !answered && strings.HasSuffix(seen.String(), prompt) {
			answered = true
			if _, err := io.WriteString(tty, answer+"\n"); err != nil {
				t.Fatal(err)
			}
		}
	}
	err = cmd.Wait()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if !answered {
		t.Fatalf("%v never asked %q:\n%s", args, prompt, seen.String())
	}
	return seen.String(), code
}

// TestTerminalPromptsAndProgress runs the commands on a real
// pseudo-terminal: restore --force asks before replacing a store and
// changes nothing on "no", restores on "yes" (rotate-key's [y/N] prompt
// is answered "n" in TestServiceIdentityClusterRotation); backup
// draws a progress bar on a terminal and prints plain progress lines when
// stderr is not one.
func TestTerminalPromptsAndProgress(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dataDir, target, keyFile := filepath.Join(dir, "data"), filepath.Join(dir, "backups"), filepath.Join(dir, "backup.key")
	testenv.Must(t, os.WriteFile(keyFile, []byte(strings.Repeat("5d", 32)), 0o600), "key")
	seedEmbeddedNode(t, dataDir, 20)
	testenv.Must(t, os.WriteFile(filepath.Join(dataDir, "audit.key"), []byte(strings.Repeat("q", 40)), 0o600), "audit key")

	// Progress: a bar on a terminal, plain lines elsewhere.
	shown, code := onTerminal(t, nil, "", "", "backup", "--data-dir", dataDir, "--to", target, "--key-file", keyFile)
	if code != 0 || !strings.Contains(shown, "\r") || !strings.Contains(shown, "backing up") || !strings.Contains(shown, "rows") {
		t.Fatalf("backup on a terminal: exit %d, showed %q; want a progress bar", code, shown)
	}
	_, stderr, code := runCairn(t, []string{"CAIRN_BACKUP_KEY=", "CAIRN_AUDIT_KEY="}, "backup", "--data-dir", dataDir, "--to", target, "--key-file", keyFile)
	if code != 0 || strings.Contains(stderr, "\r") || !strings.Contains(stderr, "backing up: ") {
		t.Fatalf("backup off a terminal: exit %d, stderr %q; want plain progress lines", code, stderr)
	}

	// A destructive command's prompt: "no" changes nothing, "yes" goes on.
	restore := []string{"restore", "--data-dir", dataDir, "--data-files", filepath.Join(dir, "restored"), "--from", target, "--key-file", keyFile, "--force"}
	b, err := open.New(open.Config{DataDir: dataDir})
	testenv.Must(t, err, "open")
	defer b.Close()
	_, err = b.AppendMessage(ctx, store.NewMessage{ConvoID: "g1", MsgID: "after-backup", Epoch: 1, Ciphertext: []byte("ct"), PaddedSize: 256})
	testenv.Must(t, err, "append after the backup")
	count := func() int {
		page, err := b.Messages(ctx, "g1", 0, 100)
		testenv.Must(t, err, "messages")
		return len(page.Messages)
	}
	shown, code = onTerminal(t, nil, `Type "yes" to go on: `, "no", restore...)
	if code != 1 || !strings.Contains(shown, "not confirmed") || count() != 21 {
		t.Fatalf("restore answered no: exit %d, %d messages, showed %q", code, count(), shown)
	}
	shown, code = onTerminal(t, nil, `Type "yes" to go on: `, "yes", restore...)
	if code != 0 || !strings.Contains(shown, "restored") || count() != 20 {
		t.Fatalf("restore answered yes: exit %d, %d messages, showed %q", code, count(), shown)
	}

}

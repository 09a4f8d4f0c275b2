package caddymodules_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/backup"
	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/store/open"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// runCairn runs the built binary and returns stdout, stderr and its exit
// status.
func runCairn(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(builder.Binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return stdout.String(), stderr.String(), exit.ExitCode()
	}
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return stdout.String(), stderr.String(), 0
}

// ndjson decodes NDJSON events and returns them by message_type (the
// last of each).
func ndjson(t *testing.T, out string) map[string]map[string]any {
	t.Helper()
	evs := map[string]map[string]any{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("not NDJSON: %q: %v", line, err)
		}
		evs[ev["message_type"].(string)] = ev
	}
	return evs
}

// TestBackupRestoreCommands drives backup, backups list and restore as an
// operator would, moving a node from SQLite to PostgreSQL.
func TestBackupRestoreCommands(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dataDir, target, keyFile := filepath.Join(dir, "data"), filepath.Join(dir, "backups"), filepath.Join(dir, "backup.key")
	testenv.Must(t, os.WriteFile(keyFile, []byte("5f1c0e6ad3b1494c8b8c0d5c7c3a0e1f9b2d4e6f8a0c2e4f6a8b0d2f4e6a8c0e\n"), 0o600), "key")
	src := open.Config{DataDir: dataDir}
	b, err := open.New(src)
	testenv.Must(t, err, "open")
	_, err = b.Migrate(ctx)
	testenv.Must(t, err, "migrate")
	_, err = b.CreateConvo(ctx, store.NewConvo{ID: "g1", CreatorDID: "did:plc:alice", CipherSuite: "0x0001", Epoch: 1,
		Members: []store.NewMember{{MemberDID: "did:plc:alice#d1", UserDID: "did:plc:alice", DeviceID: "d1", Role: store.RoleAdmin}}})
	testenv.Must(t, err, "create convo")
	for i := range 25 {
		_, err := b.AppendMessage(ctx, store.NewMessage{ConvoID: "g1", MsgID: fmt.Sprintf("m%d", i), Epoch: 1, Ciphertext: []byte("ct"), PaddedSize: 256})
		testenv.Must(t, err, "append")
	}
	b.Close()
	testenv.Must(t, os.WriteFile(filepath.Join(dataDir, "log-hash.key"), []byte("log-hash-key-of-this-node-0123456789\n"), 0o600), "log-hash key")

	out, stderr, code := runCairn(t, nil, "backup", "--data-dir", dataDir, "--to", target, "--key-file", keyFile, "--json")
	if code != 0 {
		t.Fatalf("backup: exit %d: %s", code, stderr)
	}
	sum := ndjson(t, out)["summary"]
	if sum["rows"].(float64) < 27 || sum["files"].(float64) != 1 {
		t.Errorf("backup summary = %v", sum)
	}
	name := sum["archive"].(string)
	out, _, code = runCairn(t, nil, "backups", "list", "--from", target, "--json")
	if code != 0 || ndjson(t, out)["archive"]["name"] != name {
		t.Errorf("backups list: exit %d, %s", code, out)
	}

	// The key never sits beside the archives, and a wrong key is one line.
	inTarget := filepath.Join(target, "key")
	testenv.Must(t, os.WriteFile(inTarget, []byte(strings.Repeat("k", 64)), 0o600), "key in target")
	pg := testenv.Postgres(t)
	pgFiles := filepath.Join(dir, "pgdata")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"backup", "--data-dir", dataDir, "--to", target, "--key-file", inTarget}, "inside the backup target"},
		{[]string{"restore", "--database", pg, "--data-files", pgFiles, "--from", target, "--key-file", filepath.Join(dir, "nokey")}, "backup key file"},
		{[]string{"restore", "--database", pg, "--data-files", pgFiles, "--from", target}, "no backup key"},
		{[]string{"restore", "--database", pg, "--data-files", pgFiles, "--from", dir + "/missing", "--key-file", keyFile}, "holds no archive"},
	} {
		_, stderr, code := runCairn(t, []string{"CAIRN_BACKUP_KEY="}, tc.args...)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if code != 1 || len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want one line naming %q", tc.args, code, stderr, tc.want)
		}
	}
	os.Remove(inTarget)
	_, stderr, code = runCairn(t, []string{"CAIRN_BACKUP_KEY=" + strings.Repeat("w", 64)}, "restore", "--database", pg, "--data-files", pgFiles, "--from", target)
	if code != 1 || !strings.Contains(stderr, "wrong backup key") {
		t.Errorf("wrong key: exit %d, %q", code, stderr)
	}

	// Dry run verifies and writes nothing; then SQLite → PostgreSQL.
	out, stderr, code = runCairn(t, nil, "restore", "--database", pg, "--data-files", pgFiles, "--from", target, "--key-file", keyFile, "--dry-run", "--json")
	if code != 0 || ndjson(t, out)["summary"]["verified"] != true {
		t.Fatalf("dry run: exit %d, %s %s", code, out, stderr)
	}
	if _, err := os.Stat(pgFiles); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the dry run wrote %s", pgFiles)
	}
	_, stderr, code = runCairn(t, nil, "restore", "--database", pg, "--data-files", pgFiles, "--from", target, "--key-file", keyFile)
	if code != 0 {
		t.Fatalf("restore: exit %d: %s", code, stderr)
	}
	pb, err := open.New(open.Config{Database: pg})
	testenv.Must(t, err, "open postgres")
	defer pb.Close()
	c, err := pb.Convo(ctx, "g1")
	testenv.Must(t, err, "convo")
	m, err := pb.AppendMessage(ctx, store.NewMessage{ConvoID: "g1", MsgID: "after", Epoch: 1, Ciphertext: []byte("ct"), PaddedSize: 256})
	testenv.Must(t, err, "append after restore")
	if c.LastSeq != 25 || m.Seq != 26 {
		t.Errorf("last seq %d, next %d; want 25, 26", c.LastSeq, m.Seq)
	}
	if k, _ := os.ReadFile(filepath.Join(pgFiles, "log-hash.key")); !strings.HasPrefix(string(k), "log-hash-key-of-this-node") {
		t.Errorf("the log-hash key was not restored: %q", k)
	}

	// A store with data is refused without --force, and --force wants --yes
	// off a terminal.
	for _, args := range [][]string{{}, {"--force"}} {
		_, stderr, code = runCairn(t, nil, append([]string{"restore", "--database", pg, "--data-files", pgFiles, "--from", target, "--key-file", keyFile}, args...)...)
		if code != 1 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, map[bool]string{true: "--yes", false: "--force"}[len(args) > 0]) {
			t.Errorf("restore %v into a store with data: exit %d, %q", args, code, stderr)
		}
	}
	_, stderr, code = runCairn(t, nil, "restore", "--database", pg, "--data-files", pgFiles, "--from", target, "--key-file", keyFile, "--force", "--yes")
	if code != 0 {
		t.Errorf("restore --force --yes: exit %d: %s", code, stderr)
	}
}

// TestScheduledBackupInsideTheGateway runs a gateway with a backup block:
// the schedule's first backup is due at once, and its archive restores
// into PostgreSQL with everything the SQLite node held.
func TestScheduledBackupInsideTheGateway(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dataDir, target, keyFile := filepath.Join(dir, "data"), filepath.Join(dir, "backups"), filepath.Join(dir, "backup.key")
	testenv.Must(t, os.WriteFile(keyFile, []byte(strings.Repeat("3c", 32)), 0o600), "key")
	b, err := open.New(open.Config{DataDir: dataDir})
	testenv.Must(t, err, "open")
	_, err = b.Migrate(ctx)
	testenv.Must(t, err, "migrate")
	_, err = b.CreateConvo(ctx, store.NewConvo{ID: "g1", CreatorDID: "did:plc:alice", CipherSuite: "0x0001", Epoch: 1,
		Members: []store.NewMember{{MemberDID: "did:plc:alice#d1", UserDID: "did:plc:alice", DeviceID: "d1", Role: store.RoleAdmin}}})
	testenv.Must(t, err, "create convo")
	for i := range 10 {
		_, err := b.AppendMessage(ctx, store.NewMessage{ConvoID: "g1", MsgID: fmt.Sprintf("m%d", i), Epoch: 1, Ciphertext: []byte("ct"), PaddedSize: 256})
		testenv.Must(t, err, "append")
	}
	b.Close()

	admin, port := gatewaytest.FreePort(t), gatewaytest.FreePort(t)
	caddyfile := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	cairn {
		data_dir %s
		backup {
			target   %s
			schedule daily
			keep     2
			key_file %s
		}
	}
}
http://127.0.0.1:%d {
	route /xrpc/* {
		cairn_auth {
			service_did did:web:gateway.test
		}
		cairn_delivery
	}
}
`, admin, dataDir, target, keyFile, port)
	g := gatewaytest.Start(t, &builder, gatewaytest.Options{Caddyfile: caddyfile, AdminPort: admin,
		Env: []string{"CAIRN_LOG_HASH_KEY=" + strings.Repeat("e", 40)}})
	var name string
	for deadline := time.Now().Add(60 * time.Second); name == "" && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if as, _ := (backup.Dir{Path: target}).List(ctx); len(as) > 0 {
			name = as[0].Name
		}
	}
	if name == "" {
		t.Fatalf("no scheduled backup appeared in %s\ngateway log:\n%s", target, g.Logs())
	}
	if logs := g.Logs(); strings.Contains(logs, "did:plc:alice") {
		t.Errorf("the gateway logged an identity:\n%s", logs)
	}

	pg := testenv.Postgres(t)
	_, stderr, code := runCairn(t, nil, "restore", "--database", pg, "--data-files", filepath.Join(dir, "pgdata"), "--from", target, "--key-file", keyFile)
	if code != 0 {
		t.Fatalf("restore: exit %d: %s", code, stderr)
	}
	pb, err := open.New(open.Config{Database: pg})
	testenv.Must(t, err, "open postgres")
	defer pb.Close()
	page, err := pb.Messages(ctx, "g1", 0, 100)
	testenv.Must(t, err, "messages")
	if len(page.Messages) != 10 || page.Messages[9].Seq != 10 {
		t.Errorf("restored %d messages", len(page.Messages))
	}
}

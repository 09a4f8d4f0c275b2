package caddymodules_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
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
	// The audit key a node would have generated: backups and restores are
	// written to the audit log under it.
	testenv.Must(t, os.WriteFile(filepath.Join(dataDir, "audit.key"), []byte("audit-key-of-this-node-0123456789abcdef\n"), 0o600), "audit key")

	out, stderr, code := runCairn(t, nil, "backup", "--data-dir", dataDir, "--to", target, "--key-file", keyFile, "--json")
	if code != 0 {
		t.Fatalf("backup: exit %d: %s", code, stderr)
	}
	sum := ndjson(t, out)["summary"]
	if sum["rows"].(float64) < 27 || sum["files"].(float64) != 2 {
		t.Errorf("backup summary = %v", sum)
	}
	name := sum["archive"].(string)
	assertAudited(t, open.Config{DataDir: dataDir}, "backup.create", name)
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
	// The restore is the restored chain's next row, under the restored key.
	assertAudited(t, open.Config{Database: pg}, "backup.restore", name)
	if out, stderr, code := runCairn(t, []string{"CAIRN_AUDIT_KEY="}, "audit", "verify", "--database", pg, "--audit-key-file", filepath.Join(pgFiles, "audit.key")); code != 0 {
		t.Errorf("audit verify after the restore: exit %d\n%s%s", code, out, stderr)
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

// assertAudited checks that the newest audit row of the store cfg names
// is of type typ, by a local operator, for the archive name, and names no
// identity.
func assertAudited(t *testing.T, cfg open.Config, typ, archive string) {
	t.Helper()
	b, err := open.New(cfg)
	testenv.Must(t, err, "open")
	defer b.Close()
	rows, err := b.(store.AuditLog).AuditRecords(context.Background(), store.AuditFilter{Types: []string{typ}, Limit: 1})
	testenv.Must(t, err, "audit records")
	if len(rows) != 1 {
		t.Fatalf("no %s row in the audit log of %s", typ, cfg)
	}
	var md map[string]any
	testenv.Must(t, json.Unmarshal(rows[0].Metadata, &md), "metadata")
	if !strings.HasPrefix(rows[0].Actor, "local") || md["archive"] != archive || md["rows"] == nil || strings.Contains(string(rows[0].Metadata), "did:") {
		t.Errorf("%s row: actor %q, metadata %s", typ, rows[0].Actor, rows[0].Metadata)
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
	seedEmbeddedNode(t, dataDir, 10)

	admin, port, internal := gatewaytest.FreePort(t), gatewaytest.FreePort(t), gatewaytest.FreePort(t)
	token, hash := operatorToken(t)
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
http://127.0.0.1:%d {
	route /operator/v1/* {
		cairn_operator_auth {
			static_token_hash %s
			static_token_name ops-team
		}
		cairn_operator_api
	}
}
`, admin, dataDir, target, keyFile, port, internal, hash)
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

	// The operator API: status reports the last backup, a backup started
	// through the API runs, and the scheduled and the operator's backups
	// are both in the audit log.
	api := fmt.Sprintf("http://127.0.0.1:%d/operator/v1/", internal)
	getJSON := func(path string, out any) {
		t.Helper()
		resp, body := do(t, http.MethodGet, api+path, bearer(token))
		if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), out) != nil {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
		}
	}
	var st struct {
		LastBackup *time.Time `json:"last_backup"`
		Age        *int64     `json:"last_backup_age_seconds"`
	}
	getJSON("status", &st)
	if st.LastBackup == nil || st.Age == nil || *st.Age < 0 || *st.Age > 600 {
		t.Errorf("status last_backup %v, age %v: want the scheduled backup's time", st.LastBackup, st.Age)
	}
	resp, body := do(t, http.MethodPost, api+"backups", bearer(token))
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST backups: %d %s", resp.StatusCode, body)
	}
	var state backup.State
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		getJSON("backups/running", &state)
		if !state.Running && state.Last != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the backup the API started did not finish: %+v", state)
		}
	}
	if state.Last.Error != "" || state.Last.Archive == "" || state.Last.Rows < 11 {
		t.Fatalf("the API's backup: %+v", state.Last)
	}
	var list struct {
		Archives []backup.Archive `json:"archives"`
	}
	getJSON("backups", &list)
	if len(list.Archives) != 2 || list.Archives[0].Name != state.Last.Archive {
		t.Errorf("GET backups = %+v: want the API's archive first, of 2 (keep 2)", list.Archives)
	}
	if resp, _ := do(t, http.MethodGet, api+"backups", nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET backups without a token: %d", resp.StatusCode)
	}
	var page struct {
		Events []struct {
			Type     string         `json:"type"`
			Actor    string         `json:"actor"`
			Metadata map[string]any `json:"metadata"`
		} `json:"events"`
	}
	getJSON("audit?type=backup.create&type=operator.action&limit=50", &page)
	var scheduled, byOperator, actions int
	for _, e := range page.Events {
		switch {
		case e.Type == "backup.create" && e.Actor == "" && e.Metadata["scheduled"] == true:
			scheduled++
		case e.Type == "backup.create" && e.Actor == "ops-team" && e.Metadata["archive"] == state.Last.Archive:
			byOperator++
		case e.Type == "operator.action" && strings.HasPrefix(fmt.Sprint(e.Metadata["route"]), "backups"):
			actions++
		}
	}
	if scheduled != 1 || byOperator != 1 || actions < 3 {
		t.Errorf("audit: %d scheduled and %d operator backup.create rows (want 1 and 1), %d backup route calls (want 3+): %+v", scheduled, byOperator, actions, page.Events)
	}

	pg := testenv.Postgres(t)
	_, stderr, code := runCairn(t, nil, "restore", "--database", pg, "--data-files", filepath.Join(dir, "pgdata"), "--from", target, "--key-file", keyFile)
	if code != 0 {
		t.Fatalf("restore: exit %d: %s", code, stderr)
	}
	pb, err := open.New(open.Config{Database: pg})
	testenv.Must(t, err, "open postgres")
	defer pb.Close()
	msgs, err := pb.Messages(ctx, "g1", 0, 100)
	testenv.Must(t, err, "messages")
	if len(msgs.Messages) != 10 || msgs.Messages[9].Seq != 10 {
		t.Errorf("restored %d messages", len(msgs.Messages))
	}
}

// seedEmbeddedNode migrates a new embedded (SQLite) store in dataDir and
// writes one conversation, g1, with alice as its admin and the given
// number of messages.
func seedEmbeddedNode(t *testing.T, dataDir string, messages int) {
	t.Helper()
	ctx := context.Background()
	b, err := open.New(open.Config{DataDir: dataDir})
	testenv.Must(t, err, "open")
	_, err = b.Migrate(ctx)
	testenv.Must(t, err, "migrate")
	_, err = b.CreateConvo(ctx, store.NewConvo{ID: "g1", CreatorDID: "did:plc:alice", CipherSuite: "0x0001", Epoch: 1,
		Members: []store.NewMember{{MemberDID: "did:plc:alice#d1", UserDID: "did:plc:alice", DeviceID: "d1", Role: store.RoleAdmin}}})
	testenv.Must(t, err, "create convo")
	for i := range messages {
		_, err := b.AppendMessage(ctx, store.NewMessage{ConvoID: "g1", MsgID: fmt.Sprintf("m%d", i), Epoch: 1, Ciphertext: []byte("ct"), PaddedSize: 256})
		testenv.Must(t, err, "append")
	}
	b.Close()
}

package caddymodules

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/cairn-chat/cairn-caddy/internal/backup"
)

func TestAppBackupCaddyfileAndProvision(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "backup.key")
	if err := os.WriteFile(keyFile, []byte(strings.Repeat("ab", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	var a App
	src := "cairn {\n data_dir " + dir + "/data\n backup {\n  target " + dir + "/backups\n  schedule daily\n  keep 3\n  key_file " + keyFile + "\n }\n}"
	if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(src)); err != nil {
		t.Fatal(err)
	}
	if b := a.Backup; b.Target != dir+"/backups" || time.Duration(b.Interval) != 24*time.Hour || b.Keep != 3 || b.KeyFile != keyFile {
		t.Fatalf("parsed %+v", b)
	}
	if err := provisionApp(t, &a); err != nil {
		t.Fatal(err)
	}
	r := a.BackupRunner()
	if d, ok := r.Target.(backup.Dir); !ok || d.Path != dir+"/backups" || r.Keep != 3 {
		t.Errorf("runner %+v", r)
	}
	for _, bad := range []string{
		"cairn {\n backup {\n  schedule sometimes\n }\n}",
		"cairn {\n backup {\n  keep 0\n }\n}",
		"cairn {\n backup {\n  every 1d\n }\n}",
		"cairn {\n backup {\n  schedule 10s\n }\n}",
	} {
		var a App
		if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	t.Setenv(backup.KeyEnv, "")
	for _, tc := range []struct {
		cfg  BackupConfig
		want string
	}{
		{BackupConfig{KeyFile: keyFile}, "no target"},
		{BackupConfig{Target: dir + "/b"}, "no backup key"},
		{BackupConfig{Target: dir, KeyFile: keyFile}, "inside the target"},
		{BackupConfig{Target: "ftp://x/y", KeyFile: keyFile}, "unsupported scheme"},
	} {
		cfg := tc.cfg
		a := &App{DataDir: dir + "/data", Backup: &cfg}
		if err := provisionApp(t, a); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

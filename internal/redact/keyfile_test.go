package redact_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairn-chat/cairn-caddy/internal/redact"
)

func TestKeyFileRoundTripAndConflict(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "log-hash.key")
	if _, err := redact.ReadKeyFile(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("reading a missing key file: %v, want fs.ErrNotExist", err)
	}
	key, err := redact.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if len(key) < redact.MinKeySize {
		t.Fatalf("NewKey gave %d bytes", len(key))
	}
	if err := redact.WriteKeyFile(path, key); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v", err, info.Mode())
	}
	dir, _ := os.Stat(filepath.Dir(path))
	if dir.Mode().Perm() != 0o700 {
		t.Errorf("key directory mode %v, want 0700", dir.Mode().Perm())
	}
	got, err := redact.ReadKeyFile(path)
	if err != nil || string(got) != string(key) {
		t.Fatalf("read back %q, %v", got, err)
	}
	// The same key again is fine (a second start); another is a conflict.
	if err := redact.WriteKeyFile(path, key); err != nil {
		t.Fatalf("rewriting the same key: %v", err)
	}
	other, _ := redact.NewKey()
	if err := redact.WriteKeyFile(path, other); !errors.Is(err, redact.ErrKeyFileConflict) {
		t.Fatalf("writing another key over the file: %v, want ErrKeyFileConflict", err)
	}
	if got, _ := redact.ReadKeyFile(path); string(got) != string(key) {
		t.Fatal("the conflicting write replaced the key")
	}
}

func TestShortKeysAreRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k")
	if err := os.WriteFile(path, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := redact.ReadKeyFile(path); err == nil {
		t.Fatal("a 5-byte key file was accepted")
	}
}

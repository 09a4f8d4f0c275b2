package redact

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrKeyFileConflict means WriteKeyFile found a different key already in
// the file: another process created it first.
var ErrKeyFileConflict = errors.New("redact: the key file holds a different key")

// CheckKey accepts key if it is at least MinKeySize bytes; source names
// where it came from in the error.
func CheckKey(key []byte, source string) ([]byte, error) {
	if len(key) < MinKeySize {
		return nil, fmt.Errorf("%s: the log-hash key must be at least %d bytes; generate one with `openssl rand -hex 32`", source, MinKeySize)
	}
	return key, nil
}

// NewKey returns a fresh key: 32 random bytes, hex-encoded (64 bytes).
func NewKey() ([]byte, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("generating log-hash key: %w", err)
	}
	return []byte(hex.EncodeToString(secret)), nil
}

// ReadKeyFile reads the key in the file at path (surrounding whitespace
// ignored). A missing file is an error matching fs.ErrNotExist.
func ReadKeyFile(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading log-hash key file: %w", err)
	}
	return CheckKey([]byte(strings.TrimSpace(string(raw))), "log-hash key file "+path)
}

// WriteKeyFile creates the file at path holding key, mode 0600, and its
// directory (mode 0700) if needed. Creation is exclusive, so two processes
// starting at once cannot both write: if the file exists already holding
// key, that is success; holding another key, ErrKeyFileConflict.
func WriteKeyFile(path string, key []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("creating the directory for the log-hash key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		have, err := ReadKeyFile(path)
		if err != nil {
			return err
		}
		if !bytes.Equal(have, key) {
			return fmt.Errorf("%w: %s", ErrKeyFileConflict, path)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("creating log-hash key file: %w", err)
	}
	if _, err := f.Write(append(append([]byte(nil), key...), '\n')); err != nil {
		f.Close()
		return fmt.Errorf("writing log-hash key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing log-hash key file: %w", err)
	}
	return nil
}

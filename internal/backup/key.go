package backup

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"strings"
)

// KeyEnv is the environment variable holding the backup key when no key
// file is given.
const KeyEnv = "CAIRN_BACKUP_KEY"

// MinKeySize is the shortest backup key accepted, in bytes. `openssl rand
// -hex 32` prints 64.
const MinKeySize = 32

// ErrNoKey means neither a key file nor KeyEnv gave a key.
var ErrNoKey = errors.New("no backup key: pass --key-file <file> or set " + KeyEnv + " (generate one with `openssl rand -hex 32`)")

// LoadKey returns the operator's backup key: the content of file when it
// is not empty (surrounding whitespace ignored), otherwise KeyEnv. The key
// itself is never written anywhere by this package.
func LoadKey(file string) ([]byte, error) {
	var key, source string
	if file != "" {
		raw, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("reading the backup key file: %w", err)
		}
		key, source = strings.TrimSpace(string(raw)), "backup key file "+file
	} else if key = strings.TrimSpace(os.Getenv(KeyEnv)); key != "" {
		source = "environment variable " + KeyEnv
	} else {
		return nil, ErrNoKey
	}
	if len(key) < MinKeySize {
		return nil, fmt.Errorf("%s: the backup key must be at least %d bytes; generate one with `openssl rand -hex 32`", source, MinKeySize)
	}
	return []byte(key), nil
}

// archiveKeys derives one archive's AES-256-GCM key and its key check from
// the operator key and the archive's random salt: every archive is
// encrypted under its own key.
func archiveKeys(secret, salt []byte) (key, check []byte, err error) {
	key, err = hkdf.Key(sha256.New, secret, salt, "cairn-backup v1 archive key", 32)
	if err != nil {
		return nil, nil, fmt.Errorf("deriving the archive key: %w", err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("cairn-backup v1 key check"))
	return key, mac.Sum(nil), nil
}

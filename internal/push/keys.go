package push

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	webpush "github.com/SherClockHolmes/webpush-go"
)

// KeyFileName is the push key file inside the data directory. Backups
// carry it with the other data-directory files.
const KeyFileName = "push.key"

// Keys are the push secrets that stay outside the database: the key that
// seals stored tokens, and the VAPID key pair (RFC 8292) UnifiedPush
// requests are signed with.
type Keys struct {
	// Seal is the 32-byte AES-256-GCM key of stored tokens.
	Seal []byte `json:"seal"`
	// VAPIDPrivate and VAPIDPublic are the VAPID key pair, base64url as
	// Web Push clients expect them; VAPIDPublic is the application server
	// key a client subscribes with.
	VAPIDPrivate string `json:"vapid_private"`
	VAPIDPublic  string `json:"vapid_public"`
}

// GenerateKeys makes a new set of push keys.
func GenerateKeys() (Keys, error) {
	k := Keys{Seal: make([]byte, 32)}
	if _, err := rand.Read(k.Seal); err != nil {
		return Keys{}, fmt.Errorf("generate push seal key: %w", err)
	}
	priv, pub, err := webpush.GenerateVAPIDKeys()
	if err != nil {
		return Keys{}, fmt.Errorf("generate VAPID keys: %w", err)
	}
	k.VAPIDPrivate, k.VAPIDPublic = priv, pub
	return k, nil
}

// ParseKeys reads a key file's content.
func ParseKeys(b []byte) (Keys, error) {
	var k Keys
	if err := json.Unmarshal(b, &k); err != nil {
		return Keys{}, fmt.Errorf("push key file: not the JSON this binary writes: %w", err)
	}
	if len(k.Seal) != 32 {
		return Keys{}, errors.New("push key file: seal key must be 32 bytes")
	}
	if _, err := base64.RawURLEncoding.DecodeString(k.VAPIDPublic); err != nil || k.VAPIDPublic == "" || k.VAPIDPrivate == "" {
		return Keys{}, errors.New("push key file: VAPID key pair missing or not base64url")
	}
	return k, nil
}

// ReadKeyFile reads the key file at path; os.ErrNotExist (wrapped) when
// there is none yet.
func ReadKeyFile(path string) (Keys, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Keys{}, fmt.Errorf("read push key file: %w", err)
	}
	return ParseKeys(b)
}

// WriteKeyFile writes k to path, readable by the owner only, refusing to
// replace an existing file (its tokens would no longer open).
func WriteKeyFile(path string, k Keys) error {
	b, err := json.Marshal(k)
	if err != nil {
		return fmt.Errorf("encode push keys: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write push key file: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		_ = f.Close()
		return fmt.Errorf("write push key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write push key file: %w", err)
	}
	return nil
}

package servicekey

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/bluesky-social/indigo/atproto/atcrypto"
)

// DefaultGrace is how long a rotated-out key stays published.
const DefaultGrace = 7 * 24 * time.Hour

// FileName is the keyring's file in the data directory.
const FileName = "service-keys.json"

// maxFileSize bounds the keyring file read.
const maxFileSize = 1 << 20

// Key is one signing key as the keyring file holds it.
type Key struct {
	// ID names the key: "k" and 12 hex digits of its public key's SHA-256.
	ID string `json:"id"`
	// Type is "k256" (secp256k1, ES256K), the curve atproto services use.
	Type string `json:"type"`
	// Private is the private key, multibase-encoded as atproto does it.
	Private string `json:"private_multibase"`
	// CreatedAt is when the key was made.
	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt is set once a newer key replaced this one: the key stays
	// published, and verifies, until then.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// fileFormat is the keyring file: keys oldest first, the last one signs.
type fileFormat struct {
	Version int   `json:"version"`
	Keys    []Key `json:"keys"`
}

// PublicKey is a published key.
type PublicKey struct {
	ID string `json:"id"`
	// Fragment is its verification method's id in the DID document:
	// "atproto" for the current key, "atproto_<id>" for one in its grace
	// period.
	Fragment string `json:"fragment"`
	// Multibase is the public key in multikey form (publicKeyMultibase).
	Multibase string `json:"public_key_multibase"`
	// DIDKey is the same key as a did:key.
	DIDKey    string     `json:"did_key"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	Current   bool       `json:"current"`
}

// Options configure a Keyring.
type Options struct {
	// Grace is how long a rotated-out key stays published. Default
	// DefaultGrace.
	Grace time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// ErrInvalidFile means the keyring file cannot be used as it is.
var ErrInvalidFile = errors.New("servicekey: invalid keyring file")

// Keyring is the service's signing keys, backed by one file (mode 0600)
// that every node of a cluster may share: writes are atomic renames under
// an advisory lock (flock on <file>.lock), and Refresh picks up another
// node's rotation.
type Keyring struct {
	path  string
	grace time.Duration
	now   func() time.Time

	mu      sync.RWMutex
	keys    []loadedKey
	modTime time.Time
	size    int64
}

type loadedKey struct {
	Key
	priv *atcrypto.PrivateKeyK256
	pub  atcrypto.PublicKey
}

// Open loads the keyring at path, generating its first key when the file
// does not exist (that is a write: call it from the app's Start, never
// from Provision). Keys whose grace period ended are dropped.
func Open(path string, opts Options) (*Keyring, error) {
	if opts.Grace <= 0 {
		opts.Grace = DefaultGrace
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	k := &Keyring{path: path, grace: opts.Grace, now: opts.Now}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		err := k.locked(func(f *fileFormat) (bool, error) {
			if len(f.Keys) > 0 {
				return false, nil // another node made it first
			}
			nk, err := newKey(k.now())
			if err != nil {
				return false, err
			}
			f.Keys = append(f.Keys, nk)
			return true, nil
		})
		if err != nil {
			return nil, err
		}
	}
	if err := k.Refresh(); err != nil {
		return nil, err
	}
	return k, nil
}

// Path is the keyring's file.
func (k *Keyring) Path() string { return k.path }

// Grace is how long a rotated-out key stays published.
func (k *Keyring) Grace() time.Duration { return k.grace }

// Refresh re-reads the file if it changed since the last read, and drops
// keys whose grace period ended (rewriting the file).
func (k *Keyring) Refresh() error {
	st, err := os.Stat(k.path)
	if err != nil {
		return fmt.Errorf("servicekey: %w", err)
	}
	k.mu.RLock()
	same := st.ModTime().Equal(k.modTime) && st.Size() == k.size && k.keys != nil
	expired := k.hasExpiredLocked()
	k.mu.RUnlock()
	if same && !expired {
		return nil
	}
	if expired {
		if err := k.locked(func(f *fileFormat) (bool, error) { return k.dropExpired(f), nil }); err != nil {
			return err
		}
	}
	f, st, err := readFile(k.path)
	if err != nil {
		return err
	}
	return k.install(f, st)
}

func (k *Keyring) hasExpiredLocked() bool {
	now := k.now()
	for _, lk := range k.keys {
		if lk.ExpiresAt != nil && !now.Before(*lk.ExpiresAt) {
			return true
		}
	}
	return false
}

func (k *Keyring) dropExpired(f *fileFormat) bool {
	now := k.now()
	kept := f.Keys[:0]
	for i, key := range f.Keys {
		last := i == len(f.Keys)-1
		if last || key.ExpiresAt == nil || now.Before(*key.ExpiresAt) {
			kept = append(kept, key)
		}
	}
	changed := len(kept) != len(f.Keys)
	f.Keys = kept
	return changed
}

func (k *Keyring) install(f *fileFormat, st fs.FileInfo) error {
	loaded := make([]loadedKey, 0, len(f.Keys))
	for _, key := range f.Keys {
		lk, err := load(key)
		if err != nil {
			return err
		}
		loaded = append(loaded, lk)
	}
	k.mu.Lock()
	k.keys, k.modTime, k.size = loaded, st.ModTime(), st.Size()
	k.mu.Unlock()
	return nil
}

// Rotation is what Rotate did, or would do.
type Rotation struct {
	// New is the key that signs from now on.
	New PublicKey `json:"new"`
	// Retired is the key it replaces, published until Retired.ExpiresAt.
	Retired PublicKey `json:"retired"`
}

// Rotate adds a new key that signs from now on; the previous one stays
// published for the grace period. It re-reads the file under the lock, so
// rotations on two nodes sharing the file both land.
func (k *Keyring) Rotate() (Rotation, error) {
	var rot Rotation
	err := k.locked(func(f *fileFormat) (bool, error) {
		if len(f.Keys) == 0 {
			return false, fmt.Errorf("%w: it holds no key", ErrInvalidFile)
		}
		now := k.now()
		k.dropExpired(f)
		prev := &f.Keys[len(f.Keys)-1]
		exp := now.Add(k.grace).UTC()
		prev.ExpiresAt = &exp
		nk, err := newKey(now)
		if err != nil {
			return false, err
		}
		f.Keys = append(f.Keys, nk)
		newL, err := load(nk)
		if err != nil {
			return false, err
		}
		oldL, err := load(*prev)
		if err != nil {
			return false, err
		}
		rot = Rotation{New: newL.public(true), Retired: oldL.public(false)}
		return true, nil
	})
	if err != nil {
		return Rotation{}, err
	}
	return rot, k.Refresh()
}

// Published returns the keys the DID document publishes: the current one
// first, then those in their grace period, newest first.
func (k *Keyring) Published() []PublicKey {
	k.mu.RLock()
	defer k.mu.RUnlock()
	now := k.now()
	var out []PublicKey
	for i := len(k.keys) - 1; i >= 0; i-- {
		lk := k.keys[i]
		current := i == len(k.keys)-1
		if !current && lk.ExpiresAt != nil && !now.Before(*lk.ExpiresAt) {
			continue
		}
		out = append(out, lk.public(current))
	}
	return out
}

// current returns the signing key.
func (k *Keyring) current() (loadedKey, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if len(k.keys) == 0 {
		return loadedKey{}, errors.New("servicekey: the keyring holds no key")
	}
	return k.keys[len(k.keys)-1], nil
}

func (lk loadedKey) public(current bool) PublicKey {
	frag := "atproto"
	if !current {
		frag = "atproto_" + lk.ID
	}
	return PublicKey{ID: lk.ID, Fragment: frag, Multibase: lk.pub.Multibase(), DIDKey: lk.pub.DIDKey(),
		CreatedAt: lk.CreatedAt, ExpiresAt: lk.ExpiresAt, Current: current}
}

func newKey(now time.Time) (Key, error) {
	priv, err := atcrypto.GeneratePrivateKeyK256()
	if err != nil {
		return Key{}, fmt.Errorf("servicekey: generating a key: %w", err)
	}
	pub, err := priv.PublicKey()
	if err != nil {
		return Key{}, fmt.Errorf("servicekey: %w", err)
	}
	return Key{ID: keyID(pub), Type: "k256", Private: priv.Multibase(), CreatedAt: now.UTC().Truncate(time.Second)}, nil
}

func keyID(pub atcrypto.PublicKey) string {
	sum := sha256.Sum256(pub.Bytes())
	return "k" + hex.EncodeToString(sum[:6])
}

func load(key Key) (loadedKey, error) {
	if key.Type != "k256" {
		return loadedKey{}, fmt.Errorf("%w: key %q has type %q, want k256", ErrInvalidFile, key.ID, key.Type)
	}
	p, err := atcrypto.ParsePrivateMultibase(key.Private)
	if err != nil {
		return loadedKey{}, fmt.Errorf("%w: key %q: %v", ErrInvalidFile, key.ID, err)
	}
	priv, ok := p.(*atcrypto.PrivateKeyK256)
	if !ok {
		return loadedKey{}, fmt.Errorf("%w: key %q is not a k256 key", ErrInvalidFile, key.ID)
	}
	pub, err := priv.PublicKey()
	if err != nil {
		return loadedKey{}, fmt.Errorf("%w: key %q: %v", ErrInvalidFile, key.ID, err)
	}
	if keyID(pub) != key.ID {
		return loadedKey{}, fmt.Errorf("%w: key %q does not match its private key", ErrInvalidFile, key.ID)
	}
	return loadedKey{Key: key, priv: priv, pub: pub}, nil
}

// Parse decodes a keyring file strictly and checks every key.
func Parse(data []byte) (*fileFormat, error) {
	var f fileFormat
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidFile, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data", ErrInvalidFile)
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("%w: version %d, want 1", ErrInvalidFile, f.Version)
	}
	if len(f.Keys) == 0 {
		return nil, fmt.Errorf("%w: it holds no key", ErrInvalidFile)
	}
	seen := map[string]bool{}
	for _, key := range f.Keys {
		if seen[key.ID] {
			return nil, fmt.Errorf("%w: key %q appears twice", ErrInvalidFile, key.ID)
		}
		seen[key.ID] = true
		if _, err := load(key); err != nil {
			return nil, err
		}
	}
	if !sort.SliceIsSorted(f.Keys, func(i, j int) bool { return f.Keys[i].CreatedAt.Before(f.Keys[j].CreatedAt) }) {
		return nil, fmt.Errorf("%w: keys out of order (oldest first)", ErrInvalidFile)
	}
	return &f, nil
}

func readFile(path string) (*fileFormat, fs.FileInfo, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("servicekey: %w", err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("servicekey: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, nil, fmt.Errorf("servicekey: %s is readable by others (mode %o): chmod 600 it", path, st.Mode().Perm())
	}
	if st.Size() > maxFileSize {
		return nil, nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrInvalidFile, path, maxFileSize)
	}
	data := make([]byte, st.Size())
	if _, err := fh.ReadAt(data, 0); err != nil && st.Size() > 0 {
		return nil, nil, fmt.Errorf("servicekey: reading %s: %w", path, err)
	}
	f, err := Parse(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, st, nil
}

// locked runs change on the file's content under the keyring's advisory
// lock and writes the result atomically when change reports a change. A
// missing file is an empty keyring.
func (k *Keyring) locked(change func(f *fileFormat) (bool, error)) error {
	dir := filepath.Dir(k.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("servicekey: creating %s: %w", dir, err)
	}
	lock, err := os.OpenFile(k.path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("servicekey: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("servicekey: locking %s: %w", k.path, err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing releases it too
	f := &fileFormat{Version: 1}
	if _, err := os.Stat(k.path); err == nil {
		if f, _, err = readFile(k.path); err != nil {
			return err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("servicekey: %w", err)
	}
	changed, err := change(f)
	if err != nil || !changed {
		return err
	}
	return writeFile(k.path, f)
}

func writeFile(path string, f *fileFormat) error {
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("servicekey: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("servicekey: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("servicekey: %w", err)
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("servicekey: writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("servicekey: writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("servicekey: writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("servicekey: %w", err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

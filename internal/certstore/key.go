package certstore

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// loadKey finds the key (Config.Key, else Config.KeyFile, else a new key
// generated into KeyFile when the database holds none yet) and checks it
// against the key fingerprint recorded in the database, recording it on
// first use. A node with another key is refused before it reads or writes
// a value: it could only fail to decrypt, or seal values that the other
// nodes cannot read.
func (s *Storage) loadKey(ctx context.Context, pool *pgxpool.Pool) (*sealer, error) {
	recorded, err := recordedKeyID(ctx, pool)
	if err != nil {
		return nil, err
	}
	key := s.cfg.Key
	if len(key) == 0 {
		raw, err := os.ReadFile(s.cfg.KeyFile)
		switch {
		case err == nil:
			if key, err = ParseKey(string(raw)); err != nil {
				return nil, fmt.Errorf("key file %s: %w", s.cfg.KeyFile, err)
			}
		case errors.Is(err, fs.ErrNotExist) && recorded != "":
			return nil, fmt.Errorf("certstore: the certificates in this database are sealed under key %s, and this node has no key at %s: copy that file from a node of the cluster, or configure the same key on every node (docs/tls.md)", recorded, s.cfg.KeyFile)
		case errors.Is(err, fs.ErrNotExist) && s.cfg.GenerateKeyFile:
			return s.generateKey(ctx, pool)
		default:
			return nil, fmt.Errorf("certstore: reading the key file: %w", err)
		}
	}
	sl, err := newSealer(key)
	if err != nil {
		return nil, err
	}
	if recorded == "" {
		if recorded, err = recordKeyID(ctx, pool, sl.id); err != nil {
			return nil, err
		}
	}
	if !hmac.Equal([]byte(recorded), []byte(sl.id)) {
		return nil, fmt.Errorf("certstore: this node's key (%s) is not the key the certificates in this database are sealed under (%s): every node sharing the database needs the same key (docs/tls.md)", sl.id, recorded)
	}
	return sl, nil
}

// generateKey creates the key file for a database that has no key yet.
// The file is written before the fingerprint is recorded, so a recorded
// key always exists somewhere; if another node records its key first, the
// file is removed again and this node is refused.
func (s *Storage) generateKey(ctx context.Context, pool *pgxpool.Pool) (*sealer, error) {
	secret := make([]byte, KeySize)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("certstore: generating a key: %w", err)
	}
	sl, err := newSealer(secret)
	if err != nil {
		return nil, err
	}
	path := s.cfg.KeyFile
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("certstore: creating the key file's directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("certstore: creating the key file: %w", err)
	}
	_, werr := f.Write([]byte(hex.EncodeToString(secret) + "\n"))
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(path)
		return nil, fmt.Errorf("certstore: writing the key file: %w", werr)
	}
	recorded, err := recordKeyID(ctx, pool, sl.id)
	if err != nil {
		os.Remove(path)
		return nil, err
	}
	if recorded != sl.id {
		os.Remove(path)
		return nil, fmt.Errorf("certstore: another node sealed this database under key %s while this one generated its own: copy that node's key file to %s, or configure the same key on every node (docs/tls.md)", recorded, path)
	}
	return sl, nil
}

func recordedKeyID(ctx context.Context, pool *pgxpool.Pool) (string, error) {
	var id string
	err := pool.QueryRow(ctx, `SELECT key_id FROM cairn_certstore_key`).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("certstore: reading the key fingerprint: %w", err)
	}
	return id, nil
}

// recordKeyID records id unless a fingerprint is recorded already, and
// returns the one recorded.
func recordKeyID(ctx context.Context, pool *pgxpool.Pool, id string) (string, error) {
	if _, err := pool.Exec(ctx, `INSERT INTO cairn_certstore_key (key_id) VALUES ($1) ON CONFLICT DO NOTHING`, id); err != nil {
		return "", fmt.Errorf("certstore: recording the key fingerprint: %w", err)
	}
	return recordedKeyID(ctx, pool)
}

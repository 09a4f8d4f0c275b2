// Package upgrade swaps the cairn-caddy binary in place and back: an
// atomic rename keeps the previous binary beside the installed one, and a
// state file records what rollback needs (the previous binary, the
// pre-upgrade backup, the store the commands work on). The commands
// upgrade-binary and rollback (caddymodules) drive it; the binaries
// themselves do the backup, migration, restore and health check, each the
// version that matches the schema.
package upgrade

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Suffixes of the files kept beside the installed binary.
const (
	PreviousSuffix   = ".previous"
	RolledBackSuffix = ".rolled-back"
	StateSuffix      = ".upgrade.json"
)

// State is what an upgrade leaves for rollback, in <binary>.upgrade.json
// (mode 0600: the store flags may hold a database password).
type State struct {
	From     string    `json:"from"`
	To       string    `json:"to"`
	At       time.Time `json:"at"`
	Previous string    `json:"previous"`
	// Target and Archive are the pre-upgrade backup.
	Target  string `json:"target"`
	Archive string `json:"archive"`
	// KeyFile is the backup key's file ("" for CAIRN_BACKUP_KEY).
	KeyFile string `json:"key_file,omitempty"`
	// StoreArgs are the store flags the commands pass to the binaries
	// (--config … or --database …/--data-dir …).
	StoreArgs []string `json:"store_args"`
}

// ErrNoUpgrade means there is no upgrade to roll back.
var ErrNoUpgrade = errors.New("no upgrade to roll back")

// SaveState writes s beside install.
func SaveState(install string, s State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(install+StateSuffix, b, 0o600)
}

// LoadState reads the state an upgrade of install left.
func LoadState(install string) (State, error) {
	b, err := os.ReadFile(install + StateSuffix)
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, fmt.Errorf("%w: %s does not exist (upgrade-binary writes it)", ErrNoUpgrade, install+StateSuffix)
	}
	if err != nil {
		return State{}, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return State{}, fmt.Errorf("reading %s: %w", install+StateSuffix, err)
	}
	if s.Previous == "" || s.Archive == "" || s.Target == "" {
		return State{}, fmt.Errorf("%s is incomplete: it names no previous binary or backup", install+StateSuffix)
	}
	return s, nil
}

// Install puts newBin at install atomically: newBin is copied beside
// install, the current binary is kept as install.previous, and the copy
// is renamed over install. It returns the previous binary's path.
func Install(install, newBin string) (previous string, err error) {
	st, err := os.Stat(install)
	if err != nil {
		return "", fmt.Errorf("the installed binary: %w", err)
	}
	tmp, err := copyBeside(newBin, install, st.Mode().Perm()|0o100)
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp)
	previous = install + PreviousSuffix
	if err := keep(install, previous); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, install); err != nil {
		return "", fmt.Errorf("swapping in the new binary: %w", err)
	}
	return previous, syncDir(filepath.Dir(install))
}

// Revert puts previous back at install atomically, keeping the binary it
// replaces as install.rolled-back.
func Revert(install, previous string) error {
	st, err := os.Stat(previous)
	if err != nil {
		return fmt.Errorf("the previous binary: %w", err)
	}
	tmp, err := copyBeside(previous, install, st.Mode().Perm()|0o100)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := keep(install, install+RolledBackSuffix); err != nil {
		return err
	}
	if err := os.Rename(tmp, install); err != nil {
		return fmt.Errorf("swapping the previous binary back: %w", err)
	}
	return syncDir(filepath.Dir(install))
}

// keep copies path to dst (replacing dst), so the binary at path is kept
// whatever the rename over path does next.
func keep(path, dst string) error {
	tmp, err := copyBeside(path, dst, 0o755)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("keeping %s as %s: %w", path, dst, err)
	}
	return nil
}

// copyBeside copies src to a new temporary file in dst's directory.
func copyBeside(src, dst string, mode fs.FileMode) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("writing beside %s: %w", dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(out.Name())
		return "", fmt.Errorf("copying %s: %w", src, err)
	}
	err = out.Chmod(mode)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(out.Name())
		return "", fmt.Errorf("writing %s: %w", out.Name(), err)
	}
	return out.Name(), nil
}

func writeAtomic(path string, data []byte, mode fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	_ = d.Sync()
	return nil
}

// Run runs bin with args and returns its stdout; a failure carries the
// binary's one-line error (its stderr).
func Run(ctx context.Context, bin string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := bytes.TrimSpace(stderr.Bytes())
		if len(msg) == 0 {
			msg = []byte(err.Error())
		}
		return stdout.Bytes(), fmt.Errorf("%s %s: %s", filepath.Base(bin), args[0], lastLine(msg))
	}
	return stdout.Bytes(), nil
}

func lastLine(b []byte) string {
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return string(b[i+1:])
	}
	return string(b)
}

// Summary runs bin with args (a --json command) and decodes its last
// "summary" event into out.
func Summary(ctx context.Context, out any, bin string, args ...string) error {
	stdout, err := Run(ctx, bin, args...)
	if err != nil {
		return err
	}
	lines := bytes.Split(bytes.TrimSpace(stdout), []byte("\n"))
	for i := len(lines) - 1; i >= 0; i-- {
		var probe struct {
			Type string `json:"message_type"`
		}
		if json.Unmarshal(lines[i], &probe) == nil && probe.Type == "summary" {
			return json.Unmarshal(lines[i], out)
		}
	}
	return fmt.Errorf("%s %s printed no summary", filepath.Base(bin), args[0])
}

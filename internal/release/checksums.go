package release

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// SumsFile is the name of the checksum list of a release, in the format of
// sha256sum(1), so that `sha256sum -c SHA256SUMS` verifies a download.
const SumsFile = "SHA256SUMS"

// FileSHA256 returns the hex SHA-256 of the file at path.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hashing %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// WriteSums hashes the named files of dir and writes SHA256SUMS there,
// sorted by name. It returns the sums by name.
func WriteSums(dir string, names []string) (map[string]string, error) {
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	sums := make(map[string]string, len(sorted))
	var b strings.Builder
	for _, name := range sorted {
		sum, err := FileSHA256(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		sums[name] = sum
		fmt.Fprintf(&b, "%s  %s\n", sum, name)
	}
	if err := os.WriteFile(filepath.Join(dir, SumsFile), []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	return sums, nil
}

// ReadSums parses a SHA256SUMS file.
func ReadSums(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sums := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok || len(sum) != sha256.Size*2 || name == "" {
			return nil, fmt.Errorf("%s:%d: not a sha256sum line", path, n)
		}
		if _, err := hex.DecodeString(sum); err != nil {
			return nil, fmt.Errorf("%s:%d: not a sha256sum line", path, n)
		}
		sums[name] = sum
	}
	return sums, sc.Err()
}

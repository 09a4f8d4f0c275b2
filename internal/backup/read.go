package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"strconv"
	"strings"
)

// visitor receives an archive's content as readArchive checks it. Any
// field may be nil. Nothing it receives is proven intact until
// readArchive returns without error: a restore writes inside a
// transaction it commits only then.
type visitor struct {
	header func(Header) error
	// rows receives one chunk of t's rows, as neutral values: string,
	// int64 (ints and times), []byte, bool or nil.
	rows func(t Table, rows [][]any) error
	// file receives one data-directory or Caddy-storage file; it must
	// read r to its end.
	file func(path string, mode, size int64, r io.Reader) error
}

// readArchive reads and checks a whole archive: key, every package's
// authentication, the header against this binary's catalog, each table's
// row count and digest and each file's digest against the manifest, and
// the end of the encrypted stream. It returns the manifest.
func readArchive(r io.Reader, secret []byte, v visitor) (*Manifest, error) {
	ar, err := openArchive(r, secret)
	if err != nil {
		return nil, err
	}
	e, err := ar.next()
	if err != nil {
		return nil, err
	}
	if e.name != "header.json" {
		return nil, fmt.Errorf("%w: it does not start with its header", ErrCorrupt)
	}
	var h Header
	if err := readJSON(e, &h); err != nil {
		return nil, err
	}
	if err := checkHeader(h); err != nil {
		return nil, err
	}
	if v.header != nil {
		if err := v.header(h); err != nil {
			return nil, err
		}
	}
	stats := make([]TableStats, len(h.Tables))
	sums := make([]hash.Hash, len(h.Tables))
	for i, t := range h.Tables {
		stats[i].Name, sums[i] = t.Name, sha256.New()
	}
	var files []FileStats
	current, chunk := 0, 0
	var m *Manifest
	for {
		e, err := ar.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if m != nil {
			return nil, fmt.Errorf("%w: %s follows the manifest", ErrCorrupt, e.name)
		}
		switch {
		case strings.HasPrefix(e.name, "tables/"):
			name, n, ok := strings.Cut(strings.TrimPrefix(e.name, "tables/"), "/")
			i := slices.IndexFunc(h.Tables, func(t Table) bool { return t.Name == name })
			if !ok || i < current || e.size > 2*chunkSize {
				return nil, fmt.Errorf("%w: unexpected member %s", ErrCorrupt, e.name)
			}
			if i > current {
				current, chunk = i, 0
			}
			chunk++
			if n != fmt.Sprintf("%06d.ndjson", chunk) {
				return nil, fmt.Errorf("%w: %s is out of order", ErrCorrupt, e.name)
			}
			buf, err := io.ReadAll(e.r)
			if err != nil {
				return nil, err
			}
			sums[i].Write(buf)
			stats[i].Bytes += int64(len(buf))
			rows, err := decodeRows(h.Tables[i], buf)
			if err != nil {
				return nil, err
			}
			stats[i].Rows += int64(len(rows))
			if v.rows != nil {
				if err := v.rows(h.Tables[i], rows); err != nil {
					return nil, err
				}
			}
		case strings.HasPrefix(e.name, "files/") || strings.HasPrefix(e.name, "caddy/"):
			sum := sha256.New()
			cr := &countReader{r: io.TeeReader(e.r, sum)}
			if v.file != nil {
				if err := v.file(e.name, e.mode, e.size, cr); err != nil {
					return nil, err
				}
			}
			if _, err := io.Copy(io.Discard, cr); err != nil {
				return nil, err
			}
			files = append(files, FileStats{Path: e.name, Size: cr.n, Mode: e.mode, SHA256: hex.EncodeToString(sum.Sum(nil))})
		case e.name == "manifest.json":
			m = new(Manifest)
			if err := readJSON(e, m); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("%w: unexpected member %s", ErrCorrupt, e.name)
		}
	}
	// The tar ends before the encrypted stream does: reading on to the
	// stream's end authenticates its final package, so a truncated
	// archive is refused.
	if _, err := io.Copy(io.Discard, ar.dec); err != nil {
		return nil, corrupt(err)
	}
	if m == nil {
		return nil, fmt.Errorf("%w: the manifest is missing", ErrCorrupt)
	}
	for i := range stats {
		stats[i].SHA256 = hex.EncodeToString(sums[i].Sum(nil))
	}
	if err := checkManifest(m, h, stats, files); err != nil {
		return nil, err
	}
	return m, nil
}

// checkHeader refuses an archive this binary cannot restore.
func checkHeader(h Header) error {
	if h.FormatVersion != FormatVersion {
		return fmt.Errorf("the archive has format version %d; this binary reads version %d", h.FormatVersion, FormatVersion)
	}
	if h.SchemaVersion != SchemaVersion {
		return fmt.Errorf("the archive holds schema version %d; this binary restores schema version %d: restore it with the binary that took it", h.SchemaVersion, SchemaVersion)
	}
	want, _ := json.Marshal(catalog)
	got, _ := json.Marshal(h.Tables)
	if !bytes.Equal(want, got) {
		return fmt.Errorf("%w: its tables differ from schema version %d's", ErrCorrupt, SchemaVersion)
	}
	return nil
}

func checkManifest(m *Manifest, h Header, stats []TableStats, files []FileStats) error {
	hj, _ := json.Marshal(h)
	mj, _ := json.Marshal(m.Header)
	if !bytes.Equal(hj, mj) {
		return fmt.Errorf("%w: the manifest does not match the header", ErrCorrupt)
	}
	if !slices.Equal(m.TableStats, stats) {
		return fmt.Errorf("%w: the tables do not match the manifest's row counts and digests", ErrCorrupt)
	}
	if !slices.Equal(m.Files, files) && !(len(m.Files) == 0 && len(files) == 0) {
		return fmt.Errorf("%w: the files do not match the manifest's digests", ErrCorrupt)
	}
	for _, c := range counters {
		if _, ok := m.Counters[c.name()]; !ok {
			return fmt.Errorf("%w: the manifest lacks the counter %s", ErrCorrupt, c.name())
		}
	}
	return nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// decodeRows parses one NDJSON chunk of t into neutral values.
func decodeRows(t Table, buf []byte) ([][]any, error) {
	var rows [][]any
	for len(buf) > 0 {
		line, rest, ok := bytes.Cut(buf, []byte{'\n'})
		if !ok {
			return nil, fmt.Errorf("%w: a row of %s is cut short", ErrCorrupt, t.Name)
		}
		buf = rest
		var raw []json.RawMessage
		if err := json.Unmarshal(line, &raw); err != nil || len(raw) != len(t.Columns) {
			return nil, fmt.Errorf("%w: a row of %s is malformed", ErrCorrupt, t.Name)
		}
		row := make([]any, len(raw))
		for i, c := range t.Columns {
			v, err := decodeValue(c.Kind, raw[i])
			if err != nil {
				return nil, fmt.Errorf("%w: %s.%s: %v", ErrCorrupt, t.Name, c.Name, err)
			}
			row[i] = v
		}
		rows = append(rows, row)
	}
	return rows, nil
}

func decodeValue(k Kind, raw json.RawMessage) (any, error) {
	if string(raw) == "null" {
		return nil, nil
	}
	switch k {
	case KindInt, KindTime:
		return strconv.ParseInt(string(raw), 10, 64)
	case KindBool:
		var b bool
		err := json.Unmarshal(raw, &b)
		return b, err
	case KindText:
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	case KindBytes:
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		return base64.StdEncoding.DecodeString(s)
	}
	return nil, fmt.Errorf("unknown kind %q", k)
}

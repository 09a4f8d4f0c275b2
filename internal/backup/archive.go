package backup

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
	"strings"
	"time"

	"github.com/minio/sio"
)

// FormatVersion is the archive format this package writes and reads.
const FormatVersion = 1

// magic opens every archive, in the clear.
var magic = []byte("CAIRNBK\x01")

const (
	saltSize   = 32
	checkSize  = 32
	headerSize = 8 + saltSize + checkSize
	// chunkSize bounds one table chunk held in memory while writing and
	// restoring: the archive streams, whatever the database's size.
	chunkSize = 1 << 20
	root      = "cairn-backup/"
)

// Errors restore and verify return for archives they refuse. Nothing has
// been written to the store when one is returned.
var (
	ErrNotArchive = errors.New("not a cairn backup archive")
	ErrWrongKey   = errors.New("wrong backup key: this archive was encrypted under another key")
	ErrCorrupt    = errors.New("the archive is corrupted or truncated")
)

// Header opens an archive's plaintext: what the tables are, before any row.
type Header struct {
	FormatVersion int       `json:"format_version"`
	SchemaVersion int       `json:"schema_version"`
	SourceBackend string    `json:"source_backend"`
	CreatedAt     time.Time `json:"created_at"`
	Tables        []Table   `json:"tables"`
}

// Manifest closes an archive: what it holds and how to check it.
type Manifest struct {
	Header
	// Tables' row counts and digests, in Header.Tables order.
	TableStats []TableStats `json:"table_stats"`
	// Counters are the next-value floors of the store's generated keys
	// (table.column → highest value ever handed out).
	Counters map[string]int64 `json:"counters"`
	Files    []FileStats      `json:"files"`
}

// TableStats is what the manifest says of one table.
type TableStats struct {
	Name string `json:"name"`
	Rows int64  `json:"rows"`
	// Bytes is the length of the table's NDJSON stream.
	Bytes int64 `json:"bytes"`
	// SHA256 is the hex digest of the table's NDJSON stream.
	SHA256 string `json:"sha256"`
}

// FileStats is one file of the data directory or of Caddy's storage.
type FileStats struct {
	// Path is the file's archive path relative to cairn-backup/: files/…
	// or caddy/….
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	Mode   int64  `json:"mode"`
	SHA256 string `json:"sha256"`
}

// Rows is the manifest's total row count.
func (m *Manifest) Rows() int64 {
	var n int64
	for _, t := range m.TableStats {
		n += t.Rows
	}
	return n
}

// archiveWriter writes an archive's plaintext tar into its encrypted
// stream.
type archiveWriter struct {
	enc io.WriteCloser
	tw  *tar.Writer
	now time.Time
}

func newArchiveWriter(w io.Writer, secret []byte, now time.Time) (*archiveWriter, error) {
	salt := make([]byte, saltSize)
	if _, err := rand.Read(salt); err != nil {
		return nil, fmt.Errorf("drawing the archive salt: %w", err)
	}
	key, check, err := archiveKeys(secret, salt)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(append(append(append([]byte(nil), magic...), salt...), check...)); err != nil {
		return nil, fmt.Errorf("writing the archive header: %w", err)
	}
	enc, err := sio.EncryptWriter(w, sioConfig(key))
	if err != nil {
		return nil, fmt.Errorf("starting encryption: %w", err)
	}
	return &archiveWriter{enc: enc, tw: tar.NewWriter(enc), now: now}, nil
}

func sioConfig(key []byte) sio.Config {
	return sio.Config{
		MinVersion:   sio.Version20,
		MaxVersion:   sio.Version20,
		CipherSuites: []byte{sio.AES_256_GCM},
		Key:          key,
	}
}

// file writes one tar entry.
func (a *archiveWriter) file(name string, mode int64, data []byte) error {
	hdr := &tar.Header{Name: root + name, Mode: mode, Size: int64(len(data)), ModTime: a.now, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := a.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if _, err := a.tw.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}

// stream writes one tar entry of known size from r.
func (a *archiveWriter) stream(name string, mode, size int64, r io.Reader) error {
	hdr := &tar.Header{Name: root + name, Mode: mode, Size: size, ModTime: a.now, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := a.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if _, err := io.CopyN(a.tw, r, size); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}

func (a *archiveWriter) json(name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding %s: %w", name, err)
	}
	return a.file(name, 0o600, b)
}

// close ends the tar and the encrypted stream; sio's final package marks
// the end, so a truncated archive is detected.
func (a *archiveWriter) close() error {
	if err := a.tw.Close(); err != nil {
		return fmt.Errorf("closing the archive: %w", err)
	}
	if err := a.enc.Close(); err != nil {
		return fmt.Errorf("closing the archive: %w", err)
	}
	return nil
}

// tableWriter encodes one table's rows as NDJSON chunks of at most
// chunkSize bytes, each its own tar entry, hashing the whole stream.
type tableWriter struct {
	a     *archiveWriter
	table Table
	buf   bytes.Buffer
	chunk int
	stats TableStats
	sum   hash.Hash
}

func (a *archiveWriter) table(t Table) *tableWriter {
	return &tableWriter{a: a, table: t, stats: TableStats{Name: t.Name}, sum: sha256.New()}
}

// row appends one row of neutral values.
func (w *tableWriter) row(values []any) error {
	b, err := json.Marshal(values)
	if err != nil {
		return fmt.Errorf("encoding a row of %s: %w", w.table.Name, err)
	}
	if w.buf.Len() > 0 && w.buf.Len()+len(b)+1 > chunkSize {
		if err := w.flush(); err != nil {
			return err
		}
	}
	w.buf.Write(b)
	w.buf.WriteByte('\n')
	w.stats.Rows++
	return nil
}

func (w *tableWriter) flush() error {
	if w.buf.Len() == 0 {
		return nil
	}
	w.chunk++
	w.sum.Write(w.buf.Bytes())
	w.stats.Bytes += int64(w.buf.Len())
	if err := w.a.file(fmt.Sprintf("tables/%s/%06d.ndjson", w.table.Name, w.chunk), 0o600, w.buf.Bytes()); err != nil {
		return err
	}
	w.buf.Reset()
	return nil
}

func (w *tableWriter) close() (TableStats, error) {
	if err := w.flush(); err != nil {
		return TableStats{}, err
	}
	w.stats.SHA256 = hex.EncodeToString(w.sum.Sum(nil))
	return w.stats, nil
}

// archiveReader walks an archive's plaintext, checking it against the
// manifest it ends with.
type archiveReader struct {
	tr  *tar.Reader
	dec io.Reader
}

// openArchive checks r's header and key and returns its decrypted tar.
func openArchive(r io.Reader, secret []byte) (*archiveReader, error) {
	hdr := make([]byte, headerSize)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, fmt.Errorf("%w: the header is missing", ErrNotArchive)
	}
	if !bytes.Equal(hdr[:len(magic)], magic) {
		return nil, ErrNotArchive
	}
	key, check, err := archiveKeys(secret, hdr[len(magic):len(magic)+saltSize])
	if err != nil {
		return nil, err
	}
	if !hmac.Equal(check, hdr[len(magic)+saltSize:]) {
		return nil, ErrWrongKey
	}
	dec, err := sio.DecryptReader(r, sioConfig(key))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	br := bufio.NewReaderSize(dec, 64<<10)
	return &archiveReader{tr: tar.NewReader(br), dec: br}, nil
}

// entry is one archive member: its path relative to cairn-backup/.
type entry struct {
	name string
	mode int64
	size int64
	r    io.Reader
}

// next returns the next entry, or io.EOF after the last.
func (a *archiveReader) next() (entry, error) {
	h, err := a.tr.Next()
	if errors.Is(err, io.EOF) {
		return entry{}, io.EOF
	}
	if err != nil {
		return entry{}, corrupt(err)
	}
	name, ok := strings.CutPrefix(h.Name, root)
	if !ok || h.Typeflag != tar.TypeReg || path.Clean(name) != name || strings.HasPrefix(name, "../") || strings.HasPrefix(name, "/") {
		return entry{}, fmt.Errorf("%w: unexpected member %q", ErrCorrupt, h.Name)
	}
	return entry{name: name, mode: h.Mode, size: h.Size, r: &corruptReader{a.tr}}, nil
}

// corrupt turns a decryption or tar error (sio's authentication failure,
// an unexpected end, a malformed header) into ErrCorrupt.
func corrupt(err error) error {
	if errors.Is(err, ErrCorrupt) {
		return err
	}
	return fmt.Errorf("%w: %v", ErrCorrupt, err)
}

// corruptReader reports read errors of an entry as ErrCorrupt.
type corruptReader struct{ r io.Reader }

func (c *corruptReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = corrupt(err)
	}
	return n, err
}

// readJSON reads a small JSON entry into v.
func readJSON(e entry, v any) error {
	if e.size > 64<<20 {
		return fmt.Errorf("%w: %s is too large", ErrCorrupt, e.name)
	}
	b, err := io.ReadAll(e.r)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, e.name, err)
	}
	return nil
}

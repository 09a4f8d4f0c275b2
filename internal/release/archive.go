package release

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"time"
)

// ArchiveFile is one file of a release tarball.
type ArchiveFile struct {
	// Name is the path inside the archive, below its top directory.
	Name string
	// Source is the file on disk whose content goes in.
	Source string
	// Mode is the permission bits the archive records (0755, 0644).
	Mode int64
}

// WriteTarGz writes a gzip-compressed tarball at dst holding files under the
// top directory dir. Everything that could differ between two builds of the
// same source is fixed: entries are sorted, every timestamp is mtime,
// owners are 0/0 without names, and the gzip header carries no name or
// time. Two runs over the same files give the same bytes.
func WriteTarGz(dst, dir string, files []ArchiveFile, mtime time.Time) (err error) {
	out, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("creating %s: %w", dst, err)
	}
	defer func() {
		if cerr := out.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("closing %s: %w", dst, cerr)
		}
	}()
	zw, err := gzip.NewWriterLevel(out, gzip.BestCompression)
	if err != nil {
		return err
	}
	zw.ModTime = time.Unix(0, 0) // zero: no timestamp in the header
	tw := tar.NewWriter(zw)

	sorted := append([]ArchiveFile(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	mtime = mtime.UTC().Truncate(time.Second)
	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755,
		ModTime: mtime, Format: tar.FormatPAX,
	}); err != nil {
		return err
	}
	for _, f := range sorted {
		if err := addFile(tw, path.Join(dir, f.Name), f, mtime); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", dst, err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", dst, err)
	}
	return nil
}

func addFile(tw *tar.Writer, name string, f ArchiveFile, mtime time.Time) error {
	in, err := os.Open(f.Source)
	if err != nil {
		return fmt.Errorf("archiving %s: %w", f.Source, err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg, Name: name, Size: st.Size(), Mode: f.Mode,
		ModTime: mtime, Format: tar.FormatPAX,
	}); err != nil {
		return err
	}
	if _, err := io.Copy(tw, in); err != nil {
		return fmt.Errorf("archiving %s: %w", f.Source, err)
	}
	return nil
}

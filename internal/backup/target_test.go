package backup

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"io"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { r.Rows.Close() }

// runTargetSuite is the conformance suite every Target passes.
func runTargetSuite(t *testing.T, newTarget func(t *testing.T) Target) {
	ctx := context.Background()
	t.Run("empty", func(t *testing.T) {
		as, err := newTarget(t).List(ctx)
		testenv.Must(t, err, "list")
		if len(as) != 0 {
			t.Errorf("a new target lists %v", as)
		}
	})
	t.Run("put open list delete prune", func(t *testing.T) {
		tg := newTarget(t)
		t0 := time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC)
		var names []string
		for i := range 4 {
			name := ArchiveName(t0.Add(time.Duration(i) * 24 * time.Hour))
			names = append(names, name)
			testenv.Must(t, tg.Put(ctx, name, bytes.NewReader(bytes.Repeat([]byte{byte(i)}, 1000+i))), "put")
		}
		as, err := tg.List(ctx)
		testenv.Must(t, err, "list")
		if len(as) != 4 || as[0].Name != names[3] || as[3].Name != names[0] || as[0].Size != 1003 || !as[3].Created.Equal(t0) {
			t.Fatalf("list = %+v", as)
		}
		r, err := tg.Open(ctx, names[1])
		testenv.Must(t, err, "open")
		got, err := io.ReadAll(r)
		r.Close()
		testenv.Must(t, err, "read")
		if !bytes.Equal(got, bytes.Repeat([]byte{1}, 1001)) {
			t.Errorf("read back %d bytes, wrong content", len(got))
		}
		deleted, err := Prune(ctx, tg, 2)
		testenv.Must(t, err, "prune")
		if len(deleted) != 2 || deleted[0] != names[1] || deleted[1] != names[0] {
			t.Errorf("pruned %v", deleted)
		}
		if as, _ := tg.List(ctx); len(as) != 2 {
			t.Errorf("after prune: %v", as)
		}
		if _, err := tg.Open(ctx, names[0]); !errors.Is(err, ErrNoArchive) {
			t.Errorf("open a pruned archive: %v, want ErrNoArchive", err)
		}
	})
	t.Run("a failed put leaves nothing", func(t *testing.T) {
		tg := newTarget(t)
		name := ArchiveName(time.Now())
		err := tg.Put(ctx, name, io.MultiReader(bytes.NewReader(make([]byte, 100<<10)), failingReader{}))
		if err == nil {
			t.Fatal("put from a failing reader succeeded")
		}
		if as, _ := tg.List(ctx); len(as) != 0 {
			t.Errorf("a failed put left %v", as)
		}
	})
	t.Run("refuses other names", func(t *testing.T) {
		tg := newTarget(t)
		for _, name := range []string{"../x.cbk", "cairn-x.cbk", "notes.txt", "cairn-20261130T030000Z.cbk/../../etc"} {
			if err := tg.Put(ctx, name, bytes.NewReader(nil)); err == nil {
				t.Errorf("put %q succeeded", name)
			}
			if _, err := tg.Open(ctx, name); err == nil {
				t.Errorf("open %q succeeded", name)
			}
		}
	})
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestDirTarget(t *testing.T) {
	runTargetSuite(t, func(t *testing.T) Target { return Dir{Path: t.TempDir() + "/backups"} })
}

// startS3 serves gofakes3 (an in-memory S3 implementation) on loopback
// and returns its endpoint with a bucket created.
func startS3(t *testing.T, bucket string) string {
	t.Helper()
	backend := s3mem.New()
	testenv.Must(t, backend.CreateBucket(bucket), "create bucket")
	srv := httptest.NewServer(gofakes3.New(backend).Server())
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func newS3Target(t *testing.T) Target {
	endpoint := startS3(t, "cairn")
	s, err := NewS3(S3Config{Endpoint: endpoint, Bucket: "cairn", Prefix: "node1/", Insecure: true,
		Credentials: credentials.NewStaticV4("test", "test-secret", "")})
	testenv.Must(t, err, "s3 target")
	return s
}

func TestS3Target(t *testing.T) { runTargetSuite(t, newS3Target) }

func TestParseTarget(t *testing.T) {
	for spec, want := range map[string]string{
		"/var/backups": "directory /var/backups",
		"s3://b/p?endpoint=127.0.0.1:9000&insecure=1": "s3://b/p?endpoint=127.0.0.1%3A9000",
		"rsync://backup@host/srv/cairn":               "rsync backup@host:/srv/cairn",
		"rsync:/mnt/share/cairn":                      "rsync /mnt/share/cairn",
	} {
		tg, err := ParseTarget(spec)
		if err != nil || tg.String() != want {
			t.Errorf("ParseTarget(%q) = %v, %v; want %s", spec, tg, err, want)
		}
	}
	for _, spec := range []string{"", "s3://key:secret@b/p", "s3://b/p?acl=public", "ftp://x/y", "s3://b?insecure=maybe", "rsync://host", "rsync:relative"} {
		if _, err := ParseTarget(spec); err == nil {
			t.Errorf("ParseTarget(%q) succeeded", spec)
		}
	}
}

// targets are every Target implementation, for tests that take a whole
// backup through each.
var targets = map[string]func(t *testing.T) Target{
	"dir":   func(t *testing.T) Target { return Dir{Path: t.TempDir()} },
	"s3":    newS3Target,
	"rsync": newRsyncTarget,
}

// newRsyncTarget runs rsync to a local destination directory.
func newRsyncTarget(t *testing.T) Target {
	if _, err := exec.LookPath("rsync"); err != nil {
		if testenv.RequireServices() {
			t.Fatalf("rsync is required (CAIRN_REQUIRE_SERVICES=1): %v", err)
		}
		t.Skipf("rsync not installed: %v", err)
	}
	return Rsync{Dest: t.TempDir() + "/dest", Spool: t.TempDir()}
}

func TestRsyncTarget(t *testing.T) { runTargetSuite(t, newRsyncTarget) }

// TestBackupThroughEveryTarget takes a backup into each target and
// restores it from there.
func TestBackupThroughEveryTarget(t *testing.T) {
	for name, newTarget := range targets {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			src, dst := backends["sqlite"](t), backends["sqlite"](t)
			seed(t, src, "", 20)
			tg := newTarget(t)
			a, _, err := Run(ctx, tg, Options{Store: src, Key: testKey})
			testenv.Must(t, err, "backup")
			as, err := tg.List(ctx)
			testenv.Must(t, err, "list")
			if len(as) != 1 || as[0].Name != a.Name || as[0].Size != a.Size {
				t.Fatalf("list = %+v, want %+v", as, a)
			}
			p, err := Fetch(ctx, tg, "latest", t.TempDir())
			testenv.Must(t, err, "fetch")
			_, err = Restore(ctx, p, RestoreOptions{Store: dst, Key: testKey})
			testenv.Must(t, err, "restore")
			sameDump(t, "restored", dump(t, dst), dump(t, src))
		})
	}
}

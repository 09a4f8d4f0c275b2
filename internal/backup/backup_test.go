package backup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/store/open"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

var testKey = []byte("0123456789abcdef0123456789abcdef-test-key")

// backends builds an empty store of each kind.
var backends = map[string]func(t *testing.T) open.Config{
	"sqlite": func(t *testing.T) open.Config { return open.Config{DataDir: t.TempDir()} },
	"postgres": func(t *testing.T) open.Config {
		return open.Config{Database: testenv.Postgres(t), DataDir: t.TempDir()}
	},
}

func openStore(t *testing.T, cfg open.Config) open.Backend {
	t.Helper()
	b, err := open.New(cfg)
	testenv.Must(t, err, "open store")
	t.Cleanup(func() { b.Close() })
	_, err = b.Migrate(context.Background())
	testenv.Must(t, err, "migrate")
	return b
}

// seed fills a store with every kind of row through the store API:
// devices, key packages (one consumed), a conversation with a Welcome and
// group info, messages, a commit, idempotency records, and a key file.
func seed(t *testing.T, cfg open.Config, prefix string, messages int) {
	t.Helper()
	ctx := context.Background()
	b := openStore(t, cfg)
	// SQLite keeps milliseconds; PostgreSQL→SQLite keeps what SQLite can.
	now := time.Now().Truncate(time.Millisecond)
	for _, who := range []string{"alice", "bob"} {
		did := "did:plc:" + prefix + who
		_, err := b.RegisterDevice(ctx, store.Device{OwnerDID: did, DeviceID: "d1", Name: "phone", UUID: prefix + who + "-uuid", SignatureKey: []byte{1, 2, 3}}, 10)
		testenv.Must(t, err, "register device")
		for i := range 3 {
			kp := store.KeyPackage{Ref: fmt.Sprintf("%s%s-kp%d", prefix, who, i), OwnerDID: did, DeviceID: "d1", CipherSuite: "0x0001",
				Data: []byte("kp-" + who), CreatedAt: now, ExpiresAt: now.Add(30 * 24 * time.Hour), LastResort: i == 2}
			testenv.Must(t, b.PutKeyPackage(ctx, kp, 100), "publish key package")
		}
	}
	alice, bob := "did:plc:"+prefix+"alice", "did:plc:"+prefix+"bob"
	convo := prefix + "g1"
	_, err := b.CreateConvo(ctx, store.NewConvo{
		ID: convo, CreatorDID: alice, CipherSuite: "0x0001", Name: "n", Epoch: 1,
		Members: []store.NewMember{
			{MemberDID: alice + "#d1", UserDID: alice, DeviceID: "d1", Role: store.RoleAdmin},
			{MemberDID: bob + "#d1", UserDID: bob, DeviceID: "d1", Role: store.RoleMember, KeyPackageRef: prefix + "bob-kp0"},
		},
		Welcome:   &store.NewWelcome{Data: []byte("welcome\x00bytes"), Recipients: []string{bob + "#d1"}},
		GroupInfo: []byte("gi"),
	})
	testenv.Must(t, err, "create convo")
	for i := range messages {
		_, err := b.AppendMessage(ctx, store.NewMessage{ConvoID: convo, MsgID: fmt.Sprintf("m%d", i), Epoch: 1,
			Ciphertext: bytes.Repeat([]byte{byte(i)}, 100+i%50), PaddedSize: 256})
		testenv.Must(t, err, "append")
	}
	_, err = b.AppendCommit(ctx, convo, store.NewCommit{Epoch: 1, MsgID: "c1", Data: []byte("commit"), PaddedSize: 256, GroupInfo: []byte("gi2")})
	testenv.Must(t, err, "commit")
	testenv.Must(t, os.WriteFile(filepath.Join(cfg.DataDir, "log-hash.key"), []byte(prefix+"log-hash-key\n"), 0o600), "key file")
}

// dump reads every table and counter of a store as neutral JSON lines.
func dump(t *testing.T, cfg open.Config) []string {
	t.Helper()
	ctx := context.Background()
	s, err := openSnapshot(ctx, cfg)
	testenv.Must(t, err, "snapshot")
	defer s.close()
	var out []string
	for _, tb := range catalog {
		err := s.rows(ctx, tb, func(row []any) error {
			b, err := json.Marshal(row)
			out = append(out, tb.Name+" "+string(b))
			return err
		})
		testenv.Must(t, err, "dump "+tb.Name)
	}
	return out
}

func counterValues(t *testing.T, cfg open.Config) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	s, err := openSnapshot(ctx, cfg)
	testenv.Must(t, err, "snapshot")
	defer s.close()
	m := map[string]int64{}
	for _, c := range counters {
		m[c.name()], err = s.counter(ctx, c)
		testenv.Must(t, err, "counter")
	}
	return m
}

func sameDump(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d rows, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: row %d = %s, want %s", what, i, got[i], want[i])
		}
	}
}

// TestRoundTrip backs up each backend and restores into each: every row,
// sequence number and counter survives, and the restored store goes on
// where the source left off.
func TestRoundTrip(t *testing.T) {
	for _, pair := range [][2]string{{"sqlite", "sqlite"}, {"postgres", "postgres"}, {"sqlite", "postgres"}, {"postgres", "sqlite"}} {
		t.Run(pair[0]+"_to_"+pair[1], func(t *testing.T) {
			ctx := context.Background()
			src, dst := backends[pair[0]](t), backends[pair[1]](t)
			seed(t, src, "", 40)
			target := Dir{Path: t.TempDir()}
			a, m, err := Run(ctx, target, Options{Store: src, Key: testKey})
			testenv.Must(t, err, "backup")
			if m.SourceBackend != pair[0] || m.Rows() == 0 || a.Size == 0 {
				t.Fatalf("archive %+v, manifest %+v", a, m)
			}
			path, err := Fetch(ctx, target, "latest", t.TempDir())
			testenv.Must(t, err, "fetch")
			res, err := Restore(ctx, path, RestoreOptions{Store: dst, Key: testKey})
			testenv.Must(t, err, "restore")
			if len(res.Files) != 1 {
				t.Errorf("restored files %v, want the key file", res.Files)
			}
			if k, _ := os.ReadFile(filepath.Join(dst.DataDir, "log-hash.key")); string(k) != "log-hash-key\n" {
				t.Errorf("key file = %q", k)
			}
			sameDump(t, "restored store", dump(t, dst), dump(t, src))
			if got, want := counterValues(t, dst), counterValues(t, src); got["events.cursor"] < want["events.cursor"] || got["welcomes.id"] < want["welcomes.id"] {
				t.Errorf("counters %v, want at least %v", got, want)
			}

			// The restored store continues: the next seq and cursor follow
			// the source's, and a second restore is refused.
			b := openStore(t, dst)
			before, err := b.Convo(ctx, "g1")
			testenv.Must(t, err, "convo")
			msg, err := b.AppendMessage(ctx, store.NewMessage{ConvoID: "g1", MsgID: "after", Epoch: 2, Ciphertext: []byte("x"), PaddedSize: 256})
			testenv.Must(t, err, "append after restore")
			if msg.Seq != before.LastSeq+1 || msg.Seq != 42 {
				t.Errorf("seq after restore = %d, want %d", msg.Seq, before.LastSeq+1)
			}
			if want := counterValues(t, src)["events.cursor"]; msg.Cursor <= want || cursorAfter(t, dst) <= want {
				t.Errorf("event cursor after restore = %d, want above %d", msg.Cursor, want)
			}
			if _, err := Restore(ctx, path, RestoreOptions{Store: dst, Key: testKey}); !errors.Is(err, ErrNotEmpty) {
				t.Errorf("restore into a non-empty store: %v, want ErrNotEmpty", err)
			}
		})
	}
}

func cursorAfter(t *testing.T, cfg open.Config) int64 {
	t.Helper()
	s, err := openSnapshot(context.Background(), cfg)
	testenv.Must(t, err, "snapshot")
	defer s.close()
	v, err := s.counter(context.Background(), Counter{"events", "cursor"})
	testenv.Must(t, err, "counter")
	return v
}

// TestRestoreRefusals: a wrong key, a flipped byte, a truncated archive
// and a failure just before commit each leave a store exactly as it was,
// even with Force.
func TestRestoreRefusals(t *testing.T) {
	for name, newStore := range backends {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			src, dst := newStore(t), newStore(t)
			seed(t, src, "", 300)
			seed(t, dst, "other-", 5)
			target := Dir{Path: t.TempDir()}
			a, _, err := Run(ctx, target, Options{Store: src, Key: testKey})
			testenv.Must(t, err, "backup")
			good, err := os.ReadFile(filepath.Join(target.Path, a.Name))
			testenv.Must(t, err, "read archive")
			before := dump(t, dst)
			keyBefore, _ := os.ReadFile(filepath.Join(dst.DataDir, "log-hash.key"))

			write := func(b []byte) string {
				p := filepath.Join(t.TempDir(), "a.cbk")
				testenv.Must(t, os.WriteFile(p, b, 0o600), "write")
				return p
			}
			flipped := bytes.Clone(good)
			flipped[len(flipped)/2] ^= 0x01
			otherKey := bytes.Repeat([]byte("k"), 40)
			cases := []struct {
				name string
				path string
				key  []byte
				hook func() error
				want error
			}{
				{"wrong key", write(good), otherKey, nil, ErrWrongKey},
				{"flipped byte", write(flipped), testKey, nil, ErrCorrupt},
				{"truncated", write(good[:len(good)-100]), testKey, nil, ErrCorrupt},
				{"truncated at a package boundary", write(good[:headerSize+64*1024+32]), testKey, nil, ErrCorrupt},
				{"not an archive", write([]byte("hello")), testKey, nil, ErrNotArchive},
				{"failure before commit", write(good), testKey, func() error { return errInjected }, errInjected},
			}
			for _, c := range cases {
				_, err := Restore(ctx, c.path, RestoreOptions{Store: dst, Key: c.key, Force: true, beforeCommit: c.hook})
				if !errors.Is(err, c.want) {
					t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
				}
				sameDump(t, c.name, dump(t, dst), before)
				if k, _ := os.ReadFile(filepath.Join(dst.DataDir, "log-hash.key")); !bytes.Equal(k, keyBefore) {
					t.Errorf("%s: the key file changed", c.name)
				}
				if left, _ := filepath.Glob(filepath.Join(dst.DataDir, "*.restore-tmp")); len(left) > 0 {
					t.Errorf("%s: left %v behind", c.name, left)
				}
			}
			if _, err := Restore(ctx, write(good), RestoreOptions{Store: dst, Key: testKey}); !errors.Is(err, ErrNotEmpty) {
				t.Errorf("without force: err = %v, want ErrNotEmpty", err)
			}
			// With force and a good archive, the store becomes the source.
			_, err = Restore(ctx, write(good), RestoreOptions{Store: dst, Key: testKey, Force: true})
			testenv.Must(t, err, "forced restore")
			sameDump(t, "forced restore", dump(t, dst), dump(t, src))
		})
	}
}

var errInjected = errors.New("injected failure")

// TestBackupWhileWriting takes a backup while a writer appends: the
// archive is one consistent snapshot (the conversation's last_seq matches
// its messages).
func TestBackupWhileWriting(t *testing.T) {
	for name, newStore := range backends {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			src, dst := newStore(t), newStore(t)
			seed(t, src, "", 10)
			b := openStore(t, src)
			stopped := make(chan struct{})
			go func() {
				defer close(stopped)
				for i := 0; ctx.Err() == nil; i++ {
					b.AppendMessage(ctx, store.NewMessage{ConvoID: "g1", MsgID: fmt.Sprintf("w%d", i), Epoch: 2, Ciphertext: []byte("w"), PaddedSize: 256})
				}
			}()
			var buf bytes.Buffer
			_, err := Write(ctx, &buf, Options{Store: src, Key: testKey})
			testenv.Must(t, err, "backup")
			cancel()
			<-stopped
			p := filepath.Join(t.TempDir(), "a.cbk")
			testenv.Must(t, os.WriteFile(p, buf.Bytes(), 0o600), "write")
			_, err = Restore(context.Background(), p, RestoreOptions{Store: dst, Key: testKey})
			testenv.Must(t, err, "restore")
			rb := openStore(t, dst)
			c, err := rb.Convo(context.Background(), "g1")
			testenv.Must(t, err, "convo")
			page, err := rb.Messages(context.Background(), "g1", 0, 100000)
			testenv.Must(t, err, "messages")
			if int64(len(page.Messages)) != c.LastSeq {
				t.Errorf("snapshot holds %d messages and last_seq %d", len(page.Messages), c.LastSeq)
			}
		})
	}
}

// TestCatalogCoversSchema fails when a migration adds a table or column
// the archive catalog does not carry.
func TestCatalogCoversSchema(t *testing.T) {
	for name, newStore := range backends {
		t.Run(name, func(t *testing.T) {
			cfg := newStore(t)
			openStore(t, cfg)
			got := schemaColumns(t, cfg)
			want := map[string][]string{}
			for _, tb := range catalog {
				for _, c := range tb.Columns {
					want[tb.Name] = append(want[tb.Name], c.Name)
				}
			}
			for tb, cols := range got {
				if excludedTables[tb] {
					continue
				}
				if strings.Join(cols, ",") != strings.Join(want[tb], ",") {
					t.Errorf("table %s has columns %v; the backup catalog has %v: add it to catalog.go", tb, cols, want[tb])
				}
			}
			for tb := range want {
				if _, ok := got[tb]; !ok {
					t.Errorf("the catalog lists %s, which the schema lacks", tb)
				}
			}
		})
	}
}

func schemaColumns(t *testing.T, cfg open.Config) map[string][]string {
	t.Helper()
	ctx := context.Background()
	out := map[string][]string{}
	var q string
	if cfg.Kind() == open.Postgres {
		q = `SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position`
	} else {
		q = `SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' ORDER BY m.name, p.cid`
	}
	s, err := openSnapshot(ctx, cfg)
	testenv.Must(t, err, "snapshot")
	defer s.close()
	var rows interface {
		Next() bool
		Scan(...any) error
		Close()
	}
	switch s := s.(type) {
	case *postgresSnapshot:
		r, err := s.tx.Query(ctx, q)
		testenv.Must(t, err, "columns")
		rows = r
	case *sqliteSnapshot:
		r, err := s.tx.QueryContext(ctx, q)
		testenv.Must(t, err, "columns")
		rows = sqlRows{r}
	}
	defer rows.Close()
	for rows.Next() {
		var tb, col string
		testenv.Must(t, rows.Scan(&tb, &col), "scan")
		out[tb] = append(out[tb], col)
	}
	return out
}

package certstore_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/jackc/pgx/v5"

	"github.com/cairn-chat/cairn-caddy/internal/certstore"
	"github.com/cairn-chat/cairn-caddy/internal/certstore/certstoretest"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// The helper process: the test binary re-executed to hold locks from
// another process (see runHelper).
const helperEnv = "CAIRN_CERTSTORE_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(runHelper())
	}
	os.Exit(m.Run())
}

func testKey(t testing.TB) []byte {
	t.Helper()
	key := make([]byte, certstore.KeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	return key
}

func newStorage(t testing.TB, cfg certstore.Config) *certstore.Storage {
	t.Helper()
	if cfg.LockPoll == 0 {
		cfg.LockPoll = 50 * time.Millisecond
	}
	s, err := certstore.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformancePostgres(t *testing.T) {
	certstoretest.Run(t, func(t *testing.T) certmagic.Storage {
		return newStorage(t, certstore.Config{URL: testenv.Postgres(t), Key: testKey(t)})
	})
}

// TestConformanceThroughTransactionPooler runs the suite through PgBouncer
// in transaction mode, where consecutive statements of one client may run
// on different server connections: the lease-row locks and the
// transaction-scoped migration lock must hold there.
func TestConformanceThroughTransactionPooler(t *testing.T) {
	certstoretest.Run(t, func(t *testing.T) certmagic.Storage {
		return newStorage(t, certstore.Config{URL: testenv.TransactionPooler(t, testenv.Postgres(t)), Key: testKey(t)})
	})
}

// TestConformanceFileStorage proves the suite against certmagic's own
// reference implementation.
func TestConformanceFileStorage(t *testing.T) {
	certstoretest.Run(t, func(t *testing.T) certmagic.Storage {
		return &certmagic.FileStorage{Path: t.TempDir()}
	})
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []certstore.Config{
		{},
		{URL: "postgres://x/y"},
		{URL: "postgres://x/y", Key: []byte("short")},
		{URL: "::not a url", Key: make([]byte, 32)},
	} {
		if _, err := certstore.New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

// TestNewIsLazy: New neither connects nor touches the key file, so Caddy
// can build the storage for `caddy validate` with the database down.
func TestNewIsLazy(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "certstore.key")
	s, err := certstore.New(certstore.Config{URL: "postgres://nobody@127.0.0.1:1/none?connect_timeout=1", KeyFile: keyFile, GenerateKeyFile: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(keyFile); !os.IsNotExist(err) {
		t.Fatalf("New touched the key file: %v", err)
	}
	if err := s.Store(context.Background(), "k", []byte("v")); err == nil {
		t.Fatal("Store on an unreachable database succeeded")
	}
	if _, err := os.Stat(keyFile); !os.IsNotExist(err) {
		t.Fatalf("a key was generated although the database was never reached: %v", err)
	}
	s.Close()
}

func TestParseKey(t *testing.T) {
	good := strings.Repeat("ab", 32)
	if k, err := certstore.ParseKey(" " + good + "\n"); err != nil || len(k) != 32 {
		t.Fatalf("ParseKey(good) = %x, %v", k, err)
	}
	for _, bad := range []string{"", good[:62], good + "00", strings.Repeat("zz", 32)} {
		if _, err := certstore.ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) succeeded", bad)
		}
	}
}

// testPEM is a real private key in PEM, as certmagic stores them.
func testPEM(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

// TestDumpRevealsNoPEM stores a private key and an ACME account the way
// certmagic does, dumps the database with pg_dump, and finds neither the
// PEM nor its base64 body in the dump.
func TestDumpRevealsNoPEM(t *testing.T) {
	url := testenv.Postgres(t)
	s := newStorage(t, certstore.Config{URL: url, Key: testKey(t)})
	keyPEM := testPEM(t)
	const name = "certificates/acme-v02.api.letsencrypt.org-directory/chat.example/chat.example.key"
	if err := s.Store(context.Background(), name, keyPEM); err != nil {
		t.Fatal(err)
	}
	account := []byte(`{"status":"valid","contact":["mailto:ops@chat.example"]}`)
	if err := s.Store(context.Background(), "acme/acme-v02.api.letsencrypt.org-directory/users/ops@chat.example/ops.json", account); err != nil {
		t.Fatal(err)
	}
	pgDump, err := exec.LookPath("pg_dump")
	if err != nil {
		if testenv.RequireServices() {
			t.Fatalf("pg_dump is required (CAIRN_REQUIRE_SERVICES=1): %v", err)
		}
		t.Skipf("pg_dump not installed: %v", err)
	}
	dump, err := exec.Command(pgDump, "--dbname="+url, "--data-only").Output()
	if err != nil {
		t.Fatalf("pg_dump: %v", err)
	}
	if !bytes.Contains(dump, []byte("cairn_certstore_values")) || !bytes.Contains(dump, []byte("chat.example.key")) {
		t.Fatalf("the dump holds no certificate storage rows; the test would prove nothing:\n%s", dump)
	}
	body := strings.Join(strings.Split(strings.TrimSpace(string(keyPEM)), "\n")[1:3], "")
	for _, secret := range [][]byte{[]byte("PRIVATE KEY"), []byte("BEGIN"), []byte(body[:40]), []byte(`"status":"valid"`), []byte("mailto:")} {
		if bytes.Contains(dump, secret) {
			t.Errorf("the dump contains %q", secret)
		}
	}
	// And the same storage reads it back.
	if got, err := s.Load(context.Background(), name); err != nil || !bytes.Equal(got, keyPEM) {
		t.Fatalf("Load = %q, %v", got, err)
	}
}

// TestValueBoundToKey: a sealed value copied to another key name (as an
// attacker with write access to the table could) does not decrypt.
func TestValueBoundToKey(t *testing.T) {
	url := testenv.Postgres(t)
	s := newStorage(t, certstore.Config{URL: url, Key: testKey(t)})
	ctx := context.Background()
	if err := s.Store(ctx, "a", []byte("secret for a")); err != nil {
		t.Fatal(err)
	}
	if err := s.Store(ctx, "b", []byte("secret for b")); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `UPDATE cairn_certstore_values SET value = (SELECT value FROM cairn_certstore_values WHERE key = 'a') WHERE key = 'b'`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, "b"); !errors.Is(err, certstore.ErrWrongKey) {
		t.Fatalf("Load of a value moved from another key = %v, want ErrWrongKey", err)
	}
}

// TestKeySharing: a node with another key is refused before it writes; a
// generated key file is refused on a second node until it is copied there.
func TestKeySharing(t *testing.T) {
	ctx := context.Background()
	t.Run("configured keys must match", func(t *testing.T) {
		url := testenv.Postgres(t)
		a := newStorage(t, certstore.Config{URL: url, Key: testKey(t)})
		if err := a.Store(ctx, "k", []byte("v")); err != nil {
			t.Fatal(err)
		}
		b := newStorage(t, certstore.Config{URL: url, Key: testKey(t)})
		err := b.Store(ctx, "k2", []byte("v"))
		if err == nil || !strings.Contains(err.Error(), "same key") {
			t.Fatalf("a node with another key: %v, want a refusal naming the shared key", err)
		}
		if a.Exists(ctx, "k2") {
			t.Fatal("the refused node wrote a value")
		}
	})
	t.Run("generated key file", func(t *testing.T) {
		url := testenv.Postgres(t)
		fileA := filepath.Join(t.TempDir(), "cairn", "certstore.key")
		a := newStorage(t, certstore.Config{URL: url, KeyFile: fileA, GenerateKeyFile: true})
		if err := a.Store(ctx, "k", []byte("v")); err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(fileA)
		if err != nil {
			t.Fatalf("no key file generated: %v", err)
		}
		if fi, _ := os.Stat(fileA); fi.Mode().Perm() != 0o600 {
			t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
		}
		fileB := filepath.Join(t.TempDir(), "certstore.key")
		b := newStorage(t, certstore.Config{URL: url, KeyFile: fileB, GenerateKeyFile: true})
		if _, err := b.Load(ctx, "k"); err == nil || !strings.Contains(err.Error(), "copy that file") {
			t.Fatalf("second node without the key: %v, want a refusal saying to copy the key file", err)
		}
		if _, err := os.Stat(fileB); !os.IsNotExist(err) {
			t.Fatal("the second node generated a key of its own")
		}
		if err := os.WriteFile(fileB, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := b.Load(ctx, "k"); err != nil || string(got) != "v" {
			t.Fatalf("second node with the copied key: %q, %v", got, err)
		}
	})
}

func TestRenewLockLease(t *testing.T) {
	s := newStorage(t, certstore.Config{URL: testenv.Postgres(t), Key: testKey(t)})
	ctx := context.Background()
	if err := s.RenewLockLease(ctx, "n", time.Minute); err == nil {
		t.Fatal("renewing a lock not held succeeded")
	}
	if err := s.Lock(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	if err := s.RenewLockLease(ctx, "n", time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.Unlock(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	if err := s.Unlock(ctx, "n"); err == nil {
		t.Fatal("a second Unlock succeeded")
	}
}

// helper starts the test binary as a lock-holding process. It returns the
// process and its output, line by line.
func helper(t *testing.T, url string, key []byte, args ...string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		helperEnv+"="+strings.Join(args, " "),
		"CAIRN_CERTSTORE_HELPER_URL="+url,
		"CAIRN_CERTSTORE_HELPER_KEY="+hex.EncodeToString(key),
	)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd, bufio.NewScanner(out)
}

// runHelper is the helper process. Its commands:
//
//	count NAME N TTL: N times, take lock NAME, read the counter, hold the
//	  lock past its TTL (so only renewal keeps it), write counter+1, unlock;
//	hold NAME TTL: take lock NAME, print "locked", and wait to be killed.
func runHelper() int {
	args := strings.Fields(os.Getenv(helperEnv))
	key, _ := hex.DecodeString(os.Getenv("CAIRN_CERTSTORE_HELPER_KEY"))
	ttl, err := time.ParseDuration(args[len(args)-1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	s, err := certstore.New(certstore.Config{URL: os.Getenv("CAIRN_CERTSTORE_HELPER_URL"), Key: key, LockTTL: ttl, LockPoll: 50 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	ctx := context.Background()
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "helper:", err); return 1 }
	switch args[0] {
	case "count":
		n, _ := strconv.Atoi(args[2])
		for range n {
			if err := s.Lock(ctx, args[1]); err != nil {
				return fail(err)
			}
			v := 0
			if raw, err := s.Load(ctx, "counter"); err == nil {
				v, _ = strconv.Atoi(string(raw))
			}
			time.Sleep(ttl + ttl/2)
			if err := s.Store(ctx, "counter", []byte(strconv.Itoa(v+1))); err != nil {
				return fail(err)
			}
			if err := s.Unlock(ctx, args[1]); err != nil {
				return fail(err)
			}
		}
		fmt.Println("done")
	case "hold":
		if err := s.Lock(ctx, args[1]); err != nil {
			return fail(err)
		}
		fmt.Println("locked")
		select {}
	}
	s.Close()
	return 0
}

// TestLockAcrossProcesses: two processes increment one counter under the
// lock, each holding it past its TTL. Only mutual exclusion (with lease
// renewal) keeps every increment; a lost update shows an overlap.
func TestLockAcrossProcesses(t *testing.T) {
	url := testenv.Postgres(t)
	key := testKey(t)
	const rounds = 3
	a, outA := helper(t, url, key, "count", "acme-order", strconv.Itoa(rounds), "600ms")
	b, outB := helper(t, url, key, "count", "acme-order", strconv.Itoa(rounds), "600ms")
	for _, p := range []struct {
		cmd *exec.Cmd
		out *bufio.Scanner
	}{{a, outA}, {b, outB}} {
		if !p.out.Scan() || p.out.Text() != "done" {
			t.Fatalf("helper did not finish: %q %v", p.out.Text(), p.out.Err())
		}
		if err := p.cmd.Wait(); err != nil {
			t.Fatalf("helper: %v", err)
		}
	}
	s := newStorage(t, certstore.Config{URL: url, Key: key})
	raw, err := s.Load(context.Background(), "counter")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(raw); got != strconv.Itoa(2*rounds) {
		t.Fatalf("counter = %s after %d locked increments: critical sections overlapped", got, 2*rounds)
	}
}

// TestLockHolderKilled: a process takes a lock and is killed with SIGKILL,
// so it never unlocks. Its lease stays live for its TTL, and then another
// process takes the lock.
func TestLockHolderKilled(t *testing.T) {
	url := testenv.Postgres(t)
	key := testKey(t)
	holder, out := helper(t, url, key, "hold", "acme-order", "5s")
	if !out.Scan() || out.Text() != "locked" {
		t.Fatalf("holder did not lock: %q %v", out.Text(), out.Err())
	}
	if err := holder.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = holder.Wait()

	s := newStorage(t, certstore.Config{URL: url, Key: key})
	ctx := context.Background()
	// The dead holder's lease has not run out yet (it was 5 s long).
	if ok, err := s.TryLock(ctx, "acme-order"); err != nil || ok {
		t.Fatalf("TryLock of a freshly killed holder's lock = %v, %v; want false", ok, err)
	}
	wait, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := s.Lock(wait, "acme-order"); err != nil {
		t.Fatalf("the lock of a killed holder was never freed: %v", err)
	}
	if err := s.Unlock(ctx, "acme-order"); err != nil {
		t.Fatal(err)
	}
}

// TestSchemaIsExactlyListed checks by introspection that the storage's
// tables hold exactly the columns docs/privacy.md lists: key names, sealed
// values and lock leases, and nothing about the service's members.
func TestSchemaIsExactlyListed(t *testing.T) {
	url := testenv.Postgres(t)
	s := newStorage(t, certstore.Config{URL: url, Key: testKey(t)})
	if err := s.Store(context.Background(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(context.Background(), `SELECT table_name || '.' || column_name FROM information_schema.columns
		WHERE table_name LIKE 'cairn\_certstore\_%' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"cairn_certstore_key.created", "cairn_certstore_key.key_id", "cairn_certstore_key.only_row",
		"cairn_certstore_locks.expires", "cairn_certstore_locks.name", "cairn_certstore_locks.owner",
		"cairn_certstore_migrations.applied_at", "cairn_certstore_migrations.version",
		"cairn_certstore_values.key", "cairn_certstore_values.modified", "cairn_certstore_values.size", "cairn_certstore_values.value",
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("certificate storage columns:\n got %q\nwant %q", got, want)
	}
}

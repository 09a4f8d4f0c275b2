package observe_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/store/observe"
	"github.com/cairn-chat/cairn-caddy/internal/store/sqlite"
	"github.com/cairn-chat/cairn-caddy/internal/store/storetest"
	"github.com/cairn-chat/cairn-caddy/internal/tracing"
)

// recorder keeps every call it is told of.
type recorder struct {
	mu    sync.Mutex
	calls map[string][]string // op → failures
}

func (r *recorder) StoreCall(op string, took time.Duration, failure string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if took < 0 {
		failure = "negative duration"
	}
	r.calls[op] = append(r.calls[op], failure)
}

// inspected adds the schema introspection the conformance suite asks of
// a store, which the wrapper does not pass through.
type inspected struct {
	*observe.Store
	insp storetest.SchemaInspector
}

func (s inspected) TableColumns(ctx context.Context, table string) ([]string, error) {
	return s.insp.TableColumns(ctx, table)
}

// TestConformanceThroughTheWrapper runs the store conformance suite on
// SQLite through the wrapper, so that the wrapper changes no result and
// no error, then checks that every operation the wrapper names was
// recorded, and nothing else: a method added to the store without being
// measured fails here.
func TestConformanceThroughTheWrapper(t *testing.T) {
	rec := &recorder{calls: map[string][]string{}}
	t.Run("suite", func(t *testing.T) {
		storetest.Run(t, storetest.Backend{
			NewData: func(t *testing.T) string { return filepath.Join(t.TempDir(), "cairn.db") },
			Open: func(ctx context.Context, path string, now func() time.Time) (store.Store, error) {
				s, err := sqlite.Open(ctx, sqlite.Config{Path: path, Now: now, PurgeBatch: 2})
				if err != nil {
					return nil, err
				}
				return inspected{observe.New(s, rec), s}, nil
			},
			Exec: func(t *testing.T, path, stmt string) {
				t.Helper()
				db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				if _, err := db.ExecContext(t.Context(), stmt); err != nil {
					t.Fatalf("%s: %v", stmt, err)
				}
			},
		})
	})
	ops := observe.Operations()
	for _, op := range ops {
		fails, ok := rec.calls[op]
		if !ok {
			t.Errorf("operation %s was never recorded", op)
		}
		for _, f := range fails {
			if f != "" {
				t.Errorf("operation %s recorded failure %q in a passing suite", op, f)
			}
		}
	}
	for op := range rec.calls {
		if !slices.Contains(ops, op) {
			t.Errorf("recorded operation %q is not in Operations()", op)
		}
	}
}

// TestSpansAreNamedByOperation calls the store inside a traced request
// and checks that each call is a child span named by its operation,
// carrying the operation and the database and none of the arguments, and
// that a domain outcome is not marked as an error.
func TestSpansAreNamedByOperation(t *testing.T) {
	s, err := sqlite.Open(t.Context(), sqlite.Config{Path: filepath.Join(t.TempDir(), "cairn.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec := &recorder{calls: map[string][]string{}}
	o := observe.New(s, rec)
	mem := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracing.Scrub(mem)))
	defer tp.Shutdown(context.Background())

	ctx, parent := tp.Tracer("test").Start(t.Context(), "request")
	const did, convo = "did:plc:aliceaaaaaaaaaaaaaaaaaaa", "c0ffee4242"
	if _, err := o.Convo(ctx, convo); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Convo: %v", err)
	}
	if _, _, err := o.ConvosForUser(ctx, did, "", 10); err != nil {
		t.Fatal(err)
	}
	if _, _, err := o.Idempotent(ctx, store.IdempotencyKey{CallerDID: did, NSID: "x", Key: "k"}, []byte("h"),
		func(ctx context.Context, tx store.Writer) ([]byte, error) {
			return []byte("{}"), tx.PutKeyPackage(ctx, store.KeyPackage{Ref: "ab", OwnerDID: did, Data: []byte("kp"), ExpiresAt: time.Now().Add(time.Hour)}, 0)
		}); err != nil {
		t.Fatal(err)
	}
	parent.End()

	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, sp := range mem.GetSpans().Snapshots() {
		byName[sp.Name()] = sp
		for _, a := range sp.Attributes() {
			for _, secret := range []string{did, convo} {
				if strings.Contains(a.Value.String(), secret) {
					t.Errorf("span %s attribute %s carries %q", sp.Name(), a.Key, secret)
				}
			}
		}
	}
	want := map[string]string{ // span → its parent
		"cairn.store.convo":           "request",
		"cairn.store.convos_for_user": "request",
		"cairn.store.idempotent":      "request",
	}
	for name, parentName := range want {
		sp, ok := byName[name]
		if !ok {
			t.Errorf("no span %s among %v", name, keys(byName))
			continue
		}
		if p := byName[parentName]; p == nil || sp.Parent().SpanID() != p.SpanContext().SpanID() {
			t.Errorf("span %s is not a child of %s", name, parentName)
		}
		attrs := map[attribute.Key]string{}
		for _, a := range sp.Attributes() {
			attrs[a.Key] = a.Value.String()
		}
		op := strings.TrimPrefix(name, "cairn.store.")
		if attrs[tracing.StoreOperationKey] != op || attrs[tracing.DBSystemKey] != "sqlite" {
			t.Errorf("span %s attributes %v", name, attrs)
		}
		if sp.Status().Code == codes.Error {
			t.Errorf("span %s marked as an error: %v", name, sp.Status())
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestClassify sorts errors into failures and outcomes.
func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{store.ErrNotFound, ""},
		{fmt.Errorf("append commit: %w", store.ErrStaleEpoch), ""},
		{context.Canceled, ""},
		{fmt.Errorf("convo: %w", store.ErrUnavailable), observe.Unavailable},
		{store.ErrOutcomeUnknown, observe.Unavailable},
		{errors.New("constraint failed"), observe.Internal},
	} {
		if got := observe.Classify(tc.err); got != tc.want {
			t.Errorf("Classify(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

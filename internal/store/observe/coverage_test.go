package observe

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/store/sqlite"
)

// opLog keeps the operation of every call it is told of.
type opLog struct {
	mu  sync.Mutex
	ops []string
}

func (l *opLog) StoreCall(op string, _ time.Duration, _ string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops = append(l.ops, op)
}

// TestEveryBackendMethodIsMeasured holds measured and unmeasured to
// Backend: every method of Backend is in exactly one of them. It then
// calls each measured method of the wrapper by reflection (zero
// arguments, a cancelled context, over a real SQLite store) and checks
// that the call was recorded once, under its own operation name: a
// method that passes straight through, or records under another name,
// fails here.
func TestEveryBackendMethodIsMeasured(t *testing.T) {
	backend := reflect.TypeFor[Backend]()
	inMeasured := map[string]bool{}
	for _, it := range measured {
		for i := range it.NumMethod() {
			name := it.Method(i).Name
			if _, ok := backend.MethodByName(name); !ok {
				t.Errorf("measured interface %s has %s, which Backend lacks", it, name)
			}
			inMeasured[name] = true
		}
	}
	for i := range backend.NumMethod() {
		name := backend.Method(i).Name
		switch un := slices.Contains(unmeasured, name); {
		case inMeasured[name] && un:
			t.Errorf("Backend.%s is both measured and unmeasured", name)
		case !inMeasured[name] && !un:
			t.Errorf("Backend.%s is neither measured (add its interface to measured and wrap it) nor listed as unmeasured", name)
		}
	}

	b, err := sqlite.Open(t.Context(), sqlite.Config{Path: filepath.Join(t.TempDir(), "cairn.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	rec := &opLog{}
	wrapped := reflect.ValueOf(New(b, rec))
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	for name := range inMeasured {
		m := wrapped.MethodByName(name)
		args := make([]reflect.Value, m.Type().NumIn())
		for i := range args {
			if i == 0 {
				args[i] = reflect.ValueOf(cancelled)
				continue
			}
			args[i] = reflect.Zero(m.Type().In(i))
		}
		rec.ops = nil
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s with zero arguments and a cancelled context panicked: %v", name, r)
				}
			}()
			results := m.Call(args)
			for _, r := range results {
				// TryLock may hand back an unlock function.
				if r.Kind() == reflect.Func && !r.IsNil() {
					r.Call(nil)
				}
			}
		}()
		if want := []string{OperationName(name)}; !slices.Equal(rec.ops, want) {
			t.Errorf("calling %s recorded %v, want %v", name, rec.ops, want)
		}
	}
}

// storeFailures are the sentinels of package store that report a failure
// of the store rather than answer a request, each with why.
var storeFailures = map[string]error{
	"ErrUnavailable":    store.ErrUnavailable,    // the database cannot take the call
	"ErrOutcomeUnknown": store.ErrOutcomeUnknown, // a commit cut off: unavailable too
	"ErrSchemaTooNew":   store.ErrSchemaTooNew,   // a refused migration, at start only
}

// TestEveryStoreSentinelIsClassified reads package store's source for the
// sentinel errors it exports (package-level Err… variables) and requires
// each to be a domain outcome, or one of storeFailures, which Classify
// must count as failures: a sentinel added to the store without a place
// here would count every answer it gives as a store error.
func TestEveryStoreSentinelIsClassified(t *testing.T) {
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join("..", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	messages := map[string]string{} // sentinel → its errors.New message
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			gen, ok := decl.(*ast.GenDecl)
			if !ok || gen.Tok != token.VAR {
				continue
			}
			for _, spec := range gen.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if !name.IsExported() || !strings.HasPrefix(name.Name, "Err") {
						continue
					}
					messages[name.Name] = newMessage(vs, i)
				}
			}
		}
	}
	if len(messages) < len(domainOutcomes) {
		t.Fatalf("found %d sentinels in package store, fewer than the %d domain outcomes: is the parse wrong?", len(messages), len(domainOutcomes))
	}
	for name, msg := range messages {
		if failure, ok := storeFailures[name]; ok {
			if Classify(failure) == "" {
				t.Errorf("store.%s is listed as a failure but Classify counts it as an outcome", name)
			}
			continue
		}
		if msg == "" {
			t.Errorf("store.%s is not made with errors.New: list it in storeFailures or domainOutcomes by hand and teach this test", name)
			continue
		}
		if !slices.ContainsFunc(domainOutcomes, func(e error) bool { return e.Error() == msg }) {
			t.Errorf("store.%s (%q) is neither in domainOutcomes nor in storeFailures", name, msg)
		}
	}
	for _, outcome := range domainOutcomes {
		if got := Classify(outcome); got != "" {
			t.Errorf("Classify(%v) = %q, want an outcome", outcome, got)
		}
	}
}

// newMessage returns the message of the i-th value of vs when it is
// errors.New("literal"), or "".
func newMessage(vs *ast.ValueSpec, i int) string {
	if i >= len(vs.Values) {
		return ""
	}
	c, ok := vs.Values[i].(*ast.CallExpr)
	if !ok || len(c.Args) != 1 {
		return ""
	}
	sel, ok := c.Fun.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != "New" {
		return ""
	}
	if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "errors" {
		return ""
	}
	lit, ok := c.Args[0].(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return ""
	}
	s, err := strconv.Unquote(lit.Value)
	if err != nil {
		return ""
	}
	return s
}

package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// TestClassify: every way a connection is refused, lost or cut off is
// store.ErrUnavailable; a COMMIT (or an autocommitted write) cut off after
// it may have reached the server is store.ErrOutcomeUnknown as well; what
// the server refused on its merits is neither.
func TestClassify(t *testing.T) {
	// A real refused connection, as the pool reports it.
	_, connErr := pgx.Connect(t.Context(), "postgres://nobody@127.0.0.1:1/none?connect_timeout=5")
	if connErr == nil {
		t.Fatal("connected to port 1")
	}
	pg := func(code string) error { return &pgconn.PgError{Severity: "FATAL", Code: code} }
	cases := []struct {
		name        string
		err         error
		unavailable bool
		// commitUnknown is the outcome of the same error from a COMMIT.
		commitUnknown bool
	}{
		{"connect refused", fmt.Errorf("acquire: %w", connErr), true, false},
		{"conn closed", fmt.Errorf("commit: %w", pgconn.ErrConnClosed), true, true},
		{"unexpected EOF", fmt.Errorf("receive message: %w", io.ErrUnexpectedEOF), true, true},
		{"EOF", io.EOF, true, true},
		{"reset", &net.OpError{Op: "read", Err: errors.New("connection reset by peer")}, true, true},
		{"deadline", context.DeadlineExceeded, true, true},
		{"admin shutdown", pg("57P01"), true, true},
		{"crash shutdown", pg("57P02"), true, true},
		{"starting up", pg("57P03"), true, false},
		{"connection failure", pg("08006"), true, true},
		{"too many connections", pg("53300"), true, false},
		{"disk full", pg("53100"), true, false},
		{"statement timeout", pg("57014"), true, false},
		{"unique violation", pg("23505"), false, false},
		{"serialization failure", pg("40001"), false, false},
		{"no rows", pgx.ErrNoRows, false, false},
		{"plain", errors.New("something else"), false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := classify(tc.err)
			if errors.Is(got, store.ErrUnavailable) != tc.unavailable {
				t.Errorf("classify(%v) = %v, unavailable want %v", tc.err, got, tc.unavailable)
			}
			if errors.Is(got, store.ErrOutcomeUnknown) {
				t.Errorf("classify(%v) = %v: only a commit's outcome can be unknown", tc.err, got)
			}
			if !errors.Is(got, tc.err) {
				t.Errorf("classify(%v) = %v lost its cause", tc.err, got)
			}
			c := classifyCommit(tc.err)
			if errors.Is(c, store.ErrOutcomeUnknown) != tc.commitUnknown {
				t.Errorf("classifyCommit(%v) = %v, outcome unknown want %v", tc.err, c, tc.commitUnknown)
			}
			if errors.Is(c, store.ErrUnavailable) != tc.unavailable {
				t.Errorf("classifyCommit(%v) = %v, unavailable want %v", tc.err, c, tc.unavailable)
			}
		})
	}
	if !errors.Is(store.ErrOutcomeUnknown, store.ErrUnavailable) {
		t.Error("ErrOutcomeUnknown does not match ErrUnavailable")
	}
}

package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// errClosed refuses calls after Close: the store is shutting down.
var errClosed = fmt.Errorf("store closed: %w", store.ErrUnavailable)

// unavailable reports whether err means the database cannot take calls now
// rather than that the call was wrong: a connection that could not be made,
// was lost or was refused, a timeout, or a server that is starting, shutting
// down or out of resources.
func unavailable(err error) bool {
	if errors.Is(err, store.ErrUnavailable) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return serverUnavailable(pe.Code)
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, pgconn.ErrConnClosed) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		pgconn.Timeout(err) || pgconn.SafeToRetry(err)
}

// serverUnavailable reports the SQLSTATEs of a server that refuses for
// now: connection exceptions (class 08), insufficient resources such as
// too many connections (53), a statement cancelled by statement_timeout or
// a cancel request (57014), and shutdown, crash or start-up (57P01 to
// 57P03).
func serverUnavailable(code string) bool {
	return strings.HasPrefix(code, "08") || strings.HasPrefix(code, "53") ||
		code == "57014" || code == "57P01" || code == "57P02" || code == "57P03"
}

// sessionLost reports the SQLSTATEs that end a running session (class 08,
// and 57P01 and 57P02: a shutdown or crash terminating it): a COMMIT
// answered with one of them may have been applied before the server went
// away. 57P03 (starting up) refuses a new connection only.
func sessionLost(code string) bool {
	return strings.HasPrefix(code, "08") || code == "57P01" || code == "57P02"
}

// classify marks err as store.ErrUnavailable when unavailable(err), keeping
// the cause. It is for calls that wrote nothing or whose transaction had
// not yet sent its COMMIT: the server rolls back a transaction whose
// connection is lost.
func classify(err error) error {
	if err == nil || errors.Is(err, store.ErrUnavailable) || !unavailable(err) {
		return err
	}
	return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
}

// classifyCommit classifies the error of a COMMIT, or of a write that
// commits by itself (an autocommitted statement). When the connection was
// lost after the command may have reached the server, the write may or
// may not have been applied: that is store.ErrOutcomeUnknown. A failure
// that certainly happened before anything was sent (no connection could be
// made) or that the server reported without losing the session is
// classified as usual.
//
// pgconn.SafeToRetry is no proof that nothing was sent here: when the
// reply to a COMMIT never comes, pgx closes the connection while reading
// and then reports "conn closed", which claims to be safe to retry
// (TestCommitCutOffIsOutcomeUnknown).
func classifyCommit(err error) error {
	if err == nil || errors.Is(err, store.ErrUnavailable) {
		return err
	}
	var pe *pgconn.PgError
	var ce *pgconn.ConnectError
	switch {
	case errors.As(err, &pe) && !sessionLost(pe.Code),
		errors.As(err, &ce),
		!unavailable(err):
		return classify(err)
	}
	return fmt.Errorf("%w: %w", store.ErrOutcomeUnknown, err)
}

// errorf is fmt.Errorf for a read's failure, classified.
func errorf(format string, a ...any) error {
	return classify(fmt.Errorf(format, a...))
}

package sqlite

import (
	"errors"
	"fmt"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// isBusy reports SQLITE_BUSY (another connection or process held the
// database past the busy timeout) and SQLITE_LOCKED (a conflicting lock
// within one connection's shared cache), with any extended code.
func isBusy(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	code := se.Code() & 0xff
	return code == sqlite3.SQLITE_BUSY || code == sqlite3.SQLITE_LOCKED
}

// classify marks err as store.ErrUnavailable when the database was busy or
// locked, keeping the cause. A SQLite transaction that fails so wrote
// nothing: the file is local, so there is no commit whose outcome is
// unknown.
func classify(err error) error {
	if err == nil || errors.Is(err, store.ErrUnavailable) || !isBusy(err) {
		return err
	}
	return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
}

// errorf is fmt.Errorf for a read's failure, classified.
func errorf(format string, a ...any) error {
	return classify(fmt.Errorf(format, a...))
}

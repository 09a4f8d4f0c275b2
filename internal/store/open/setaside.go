package open

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// ErrSetAsideUnsupported means SetAside cannot empty this backend.
var ErrSetAsideUnsupported = errors.New("setting the database aside is supported for the embedded SQLite database only")

// SetAside moves the embedded SQLite database (and its WAL and shared
// memory files) aside, renamed with suffix, so that the data directory has
// no database and a restore can start from an empty one; nothing is
// deleted. It returns the paths it moved the files to. The database must
// not be open in any process. A PostgreSQL store is refused with
// ErrSetAsideUnsupported: restore into a new, empty database instead.
func SetAside(c Config, suffix string) ([]string, error) {
	if c.Kind() != SQLite {
		return nil, ErrSetAsideUnsupported
	}
	var moved []string
	for _, ext := range []string{"", "-wal", "-shm"} {
		from := c.SQLitePath() + ext
		to := c.SQLitePath() + suffix + ext
		if _, err := os.Stat(to); err == nil {
			return moved, fmt.Errorf("%s exists already: move it away first", to)
		}
		if err := os.Rename(from, to); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return moved, fmt.Errorf("setting %s aside: %w", from, err)
		}
		moved = append(moved, to)
	}
	return moved, nil
}

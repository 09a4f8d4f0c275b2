package backup

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cairn-chat/cairn-caddy/internal/store/open"
)

// sink writes a restore into one transaction of the target store; nothing
// is visible, and nothing is kept, until commit.
type sink interface {
	// rowCount counts the rows of t, to tell an empty store.
	rowCount(ctx context.Context, t Table) (int64, error)
	// clear deletes every row of t.
	clear(ctx context.Context, t Table) error
	insert(ctx context.Context, t Table, rows [][]any) error
	// maxValue is the highest value in c's column (0 when empty).
	maxValue(ctx context.Context, c Counter) (int64, error)
	// horizon is the highest event cursor ever purged.
	horizon(ctx context.Context) (int64, error)
	// setCounter makes c hand out values above floor from now on.
	setCounter(ctx context.Context, c Counter, floor int64) error
	commit(ctx context.Context) error
	rollback() error
}

func openSink(ctx context.Context, cfg open.Config) (sink, error) {
	if cfg.Kind() == open.Postgres {
		conn, err := pgx.Connect(ctx, strings.TrimSpace(cfg.Database))
		if err != nil {
			return nil, fmt.Errorf("connecting to %s: %w", cfg, err)
		}
		tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable})
		if err != nil {
			conn.Close(ctx)
			return nil, fmt.Errorf("starting the restore transaction on %s: %w", cfg, err)
		}
		return &postgresSink{conn: conn, tx: tx}, nil
	}
	db, err := sql.Open("sqlite", sqliteDSN(cfg, false))
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", cfg, err)
	}
	db.SetMaxOpenConns(1)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("starting the restore transaction on %s: %w", cfg, err)
	}
	return &sqliteSink{db: db, tx: tx}, nil
}

type postgresSink struct {
	conn *pgx.Conn
	tx   pgx.Tx
}

func (s *postgresSink) rowCount(ctx context.Context, t Table) (int64, error) {
	var n int64
	err := s.tx.QueryRow(ctx, "SELECT count(*) FROM "+quoteIdent(t.Name)).Scan(&n)
	return n, err
}

func (s *postgresSink) clear(ctx context.Context, t Table) error {
	_, err := s.tx.Exec(ctx, "DELETE FROM "+quoteIdent(t.Name))
	return err
}

// insert copies rows in with COPY, which also fills GENERATED ALWAYS
// identity columns with the archived values.
func (s *postgresSink) insert(ctx context.Context, t Table, rows [][]any) error {
	cols := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cols[i] = c.Name
		if c.Kind == KindTime {
			for _, r := range rows {
				if r[i] != nil {
					r[i] = time.UnixMicro(r[i].(int64)).UTC()
				}
			}
		}
	}
	_, err := s.tx.CopyFrom(ctx, pgx.Identifier{t.Name}, cols, pgx.CopyFromRows(rows))
	return err
}

func (s *postgresSink) maxValue(ctx context.Context, c Counter) (int64, error) {
	var v int64
	err := s.tx.QueryRow(ctx, "SELECT coalesce(max("+quoteIdent(c.Column)+"), 0) FROM "+quoteIdent(c.Table)).Scan(&v)
	return v, err
}

func (s *postgresSink) horizon(ctx context.Context) (int64, error) {
	var v int64
	err := s.tx.QueryRow(ctx, "SELECT coalesce(max(purged_through), 0) FROM event_horizon").Scan(&v)
	return v, err
}

func (s *postgresSink) setCounter(ctx context.Context, c Counter, floor int64) error {
	var err error
	if floor > 0 {
		_, err = s.tx.Exec(ctx, `SELECT setval(pg_get_serial_sequence($1, $2), $3, true)`, quoteIdent(c.Table), c.Column, floor)
	} else {
		_, err = s.tx.Exec(ctx, `SELECT setval(pg_get_serial_sequence($1, $2), 1, false)`, quoteIdent(c.Table), c.Column)
	}
	return err
}

func (s *postgresSink) commit(ctx context.Context) error { return s.tx.Commit(ctx) }

func (s *postgresSink) rollback() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.tx.Rollback(ctx)
	if errors.Is(err, pgx.ErrTxClosed) {
		err = nil
	}
	return errors.Join(err, s.conn.Close(ctx))
}

type sqliteSink struct {
	db *sql.DB
	tx *sql.Tx
}

func (s *sqliteSink) rowCount(ctx context.Context, t Table) (int64, error) {
	var n int64
	err := s.tx.QueryRowContext(ctx, "SELECT count(*) FROM "+quoteIdent(t.Name)).Scan(&n)
	return n, err
}

func (s *sqliteSink) clear(ctx context.Context, t Table) error {
	_, err := s.tx.ExecContext(ctx, "DELETE FROM "+quoteIdent(t.Name))
	return err
}

func (s *sqliteSink) insert(ctx context.Context, t Table, rows [][]any) error {
	cols := make([]string, len(t.Columns))
	marks := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cols[i], marks[i] = quoteIdent(c.Name), "?"
	}
	stmt, err := s.tx.PrepareContext(ctx, "INSERT INTO "+quoteIdent(t.Name)+" ("+strings.Join(cols, ", ")+") VALUES ("+strings.Join(marks, ", ")+")")
	if err != nil {
		return err
	}
	defer stmt.Close()
	for _, r := range rows {
		for i, c := range t.Columns {
			switch v := r[i].(type) {
			case int64:
				if c.Kind == KindTime {
					r[i] = time.UnixMicro(v).UnixMilli()
				}
			case bool:
				r[i] = 0
				if v {
					r[i] = 1
				}
			}
		}
		if _, err := stmt.ExecContext(ctx, r...); err != nil {
			return err
		}
	}
	return nil
}

func (s *sqliteSink) maxValue(ctx context.Context, c Counter) (int64, error) {
	var v int64
	err := s.tx.QueryRowContext(ctx, "SELECT coalesce(max("+quoteIdent(c.Column)+"), 0) FROM "+quoteIdent(c.Table)).Scan(&v)
	return v, err
}

func (s *sqliteSink) horizon(ctx context.Context) (int64, error) {
	var v int64
	err := s.tx.QueryRowContext(ctx, "SELECT coalesce(max(purged_through), 0) FROM event_horizon").Scan(&v)
	return v, err
}

// setCounter sets the AUTOINCREMENT floor in sqlite_sequence.
func (s *sqliteSink) setCounter(ctx context.Context, c Counter, floor int64) error {
	if _, err := s.tx.ExecContext(ctx, `DELETE FROM sqlite_sequence WHERE name = ?`, c.Table); err != nil {
		return err
	}
	if floor == 0 {
		return nil
	}
	_, err := s.tx.ExecContext(ctx, `INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)`, c.Table, floor)
	return err
}

func (s *sqliteSink) commit(context.Context) error { return s.tx.Commit() }

func (s *sqliteSink) rollback() error {
	err := s.tx.Rollback()
	if errors.Is(err, sql.ErrTxDone) {
		err = nil
	}
	return errors.Join(err, s.db.Close())
}

package backup

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cairn-chat/cairn-caddy/internal/store/open"
)

// snapshot is one consistent read of a store: every table and counter as
// of one instant, while the gateway goes on writing.
type snapshot interface {
	schemaVersion(ctx context.Context) (int, error)
	// rows calls emit with each row of t in primary-key order, as
	// neutral values.
	rows(ctx context.Context, t Table, emit func([]any) error) error
	// counter reads the highest value c ever handed out.
	counter(ctx context.Context, c Counter) (int64, error)
	close() error
}

// openSnapshot starts a snapshot of the store cfg names.
func openSnapshot(ctx context.Context, cfg open.Config) (snapshot, error) {
	if cfg.Kind() == open.Postgres {
		return openPostgresSnapshot(ctx, cfg)
	}
	return openSQLiteSnapshot(ctx, cfg)
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func selectSQL(t Table) string {
	cols := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cols[i] = quoteIdent(c.Name)
	}
	return "SELECT " + strings.Join(cols, ", ") + " FROM " + quoteIdent(t.Name) + " ORDER BY " + t.OrderBy
}

// postgresSnapshot reads in one REPEATABLE READ, READ ONLY transaction:
// every table as of its first statement, without blocking writers.
type postgresSnapshot struct {
	conn *pgx.Conn
	tx   pgx.Tx
}

func openPostgresSnapshot(ctx context.Context, cfg open.Config) (*postgresSnapshot, error) {
	conn, err := pgx.Connect(ctx, strings.TrimSpace(cfg.Database))
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", cfg, err)
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("starting the snapshot of %s: %w", cfg, err)
	}
	return &postgresSnapshot{conn: conn, tx: tx}, nil
}

func (s *postgresSnapshot) schemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("reading the schema version: %w", err)
	}
	return v, nil
}

func (s *postgresSnapshot) rows(ctx context.Context, t Table, emit func([]any) error) error {
	rows, err := s.tx.Query(ctx, selectSQL(t))
	if err != nil {
		return fmt.Errorf("reading %s: %w", t.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return fmt.Errorf("reading %s: %w", t.Name, err)
		}
		for i, c := range t.Columns {
			if vals[i], err = fromPostgres(c.Kind, vals[i]); err != nil {
				return fmt.Errorf("reading %s.%s: %w", t.Name, c.Name, err)
			}
		}
		if err := emit(vals); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", t.Name, err)
	}
	return nil
}

// counter reads the sequence behind c. Sequences are not transactional:
// the value read is at least the snapshot's, which is what restore needs.
func (s *postgresSnapshot) counter(ctx context.Context, c Counter) (int64, error) {
	var v *int64
	err := s.tx.QueryRow(ctx, `SELECT pg_sequence_last_value(pg_get_serial_sequence($1, $2)::regclass)`,
		quoteIdent(c.Table), c.Column).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("reading the counter of %s: %w", c.name(), err)
	}
	if v == nil {
		return 0, nil
	}
	return *v, nil
}

func (s *postgresSnapshot) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = s.tx.Rollback(ctx)
	return s.conn.Close(ctx)
}

func fromPostgres(k Kind, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch k {
	case KindTime:
		t, ok := v.(time.Time)
		if !ok {
			return nil, fmt.Errorf("want a timestamp, got %T", v)
		}
		return t.UnixMicro(), nil
	case KindText:
		if _, ok := v.(string); !ok {
			return nil, fmt.Errorf("want text, got %T", v)
		}
	case KindInt:
		switch n := v.(type) {
		case int64:
		case int32:
			return int64(n), nil
		default:
			return nil, fmt.Errorf("want an integer, got %T", v)
		}
	case KindBytes:
		if _, ok := v.([]byte); !ok {
			return nil, fmt.Errorf("want bytes, got %T", v)
		}
	case KindBool:
		if _, ok := v.(bool); !ok {
			return nil, fmt.Errorf("want a bool, got %T", v)
		}
	}
	return v, nil
}

// sqliteSnapshot reads in one read transaction on a WAL database: the
// gateway's writer goes on committing while it reads.
type sqliteSnapshot struct {
	db *sql.DB
	tx *sql.Tx
}

func sqliteDSN(cfg open.Config, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Add("_pragma", "foreign_keys(1)")
		q.Set("_txlock", "immediate")
	}
	file := "file:" + strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(cfg.SQLitePath())
	return file + "?" + q.Encode()
}

func openSQLiteSnapshot(ctx context.Context, cfg open.Config) (*sqliteSnapshot, error) {
	if _, err := os.Stat(cfg.SQLitePath()); err != nil {
		return nil, fmt.Errorf("%s: %w: check data_dir (or --data-dir)", cfg, err)
	}
	db, err := sql.Open("sqlite", sqliteDSN(cfg, true))
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", cfg, err)
	}
	db.SetMaxOpenConns(1)
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("starting the snapshot of %s: %w", cfg, err)
	}
	// A deferred transaction takes its snapshot at its first read.
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master`).Scan(&n); err != nil {
		tx.Rollback()
		db.Close()
		return nil, fmt.Errorf("starting the snapshot of %s: %w", cfg, err)
	}
	if n == 0 {
		tx.Rollback()
		db.Close()
		return nil, fmt.Errorf("%s holds no store", cfg)
	}
	return &sqliteSnapshot{db: db, tx: tx}, nil
}

func (s *sqliteSnapshot) schemaVersion(ctx context.Context) (int, error) {
	var v int
	if err := s.tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("reading the schema version: %w", err)
	}
	return v, nil
}

func (s *sqliteSnapshot) rows(ctx context.Context, t Table, emit func([]any) error) error {
	rows, err := s.tx.QueryContext(ctx, selectSQL(t))
	if err != nil {
		return fmt.Errorf("reading %s: %w", t.Name, err)
	}
	defer rows.Close()
	vals := make([]any, len(t.Columns))
	ptrs := make([]any, len(t.Columns))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return fmt.Errorf("reading %s: %w", t.Name, err)
		}
		out := make([]any, len(vals))
		for i, c := range t.Columns {
			if out[i], err = fromSQLite(c.Kind, vals[i]); err != nil {
				return fmt.Errorf("reading %s.%s: %w", t.Name, c.Name, err)
			}
		}
		if err := emit(out); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", t.Name, err)
	}
	return nil
}

func (s *sqliteSnapshot) counter(ctx context.Context, c Counter) (int64, error) {
	var v int64
	err := s.tx.QueryRowContext(ctx, `SELECT seq FROM sqlite_sequence WHERE name = ?`, c.Table).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading the counter of %s: %w", c.name(), err)
	}
	return v, nil
}

func (s *sqliteSnapshot) close() error {
	_ = s.tx.Rollback()
	return s.db.Close()
}

func fromSQLite(k Kind, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch k {
	case KindTime:
		ms, ok := v.(int64)
		if !ok {
			return nil, fmt.Errorf("want milliseconds, got %T", v)
		}
		return ms * 1000, nil
	case KindInt:
		if _, ok := v.(int64); !ok {
			return nil, fmt.Errorf("want an integer, got %T", v)
		}
	case KindBool:
		n, ok := v.(int64)
		if !ok {
			return nil, fmt.Errorf("want 0 or 1, got %T", v)
		}
		return n != 0, nil
	case KindText:
		switch s := v.(type) {
		case string:
		case []byte:
			return string(s), nil
		default:
			return nil, fmt.Errorf("want text, got %T", v)
		}
	case KindBytes:
		switch b := v.(type) {
		case []byte:
			// A copy, and an empty value stays empty rather than NULL.
			return append(make([]byte, 0, len(b)), b...), nil
		case string:
			return []byte(b), nil
		default:
			return nil, fmt.Errorf("want bytes, got %T", v)
		}
	}
	return v, nil
}

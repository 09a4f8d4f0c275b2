package caddymodules

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/store/open"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "migrate",
		Short: "Shows or applies the delivery store's schema migrations",
		Long: `Shows or applies the schema migrations this binary embeds, on the database
the cairn app is configured with: found from --config (a Caddyfile or JSON,
read the way "run" reads it, without starting anything) or given directly
with --database (PostgreSQL) or --data-dir (embedded SQLite).

    cairn-caddy migrate status --config /etc/caddy/Caddyfile
    cairn-caddy migrate up --dry-run --config /etc/caddy/Caddyfile
    cairn-caddy migrate up --database postgres://cairn@db/cairn --json

"run" applies pending migrations when it starts unless the cairn app has
"migrations manual"; clusters that set it run "migrate up" once per upgrade.
A database a newer binary migrated is refused: run that binary, or
"cairn-caddy rollback" to the previous binary and the pre-upgrade backup.`,
		CobraFunc: func(cmd *cobra.Command) {
			status := &cobra.Command{
				Use:   "status [--config <path>] [--database <url>] [--json]",
				Short: "Shows the applied schema version and the pending migrations",
				Args:  cobra.ArbitraryArgs,
			}
			runCLI(status, "cairn-caddy migrate", migrateRun(migrateStatus))
			up := &cobra.Command{
				Use:   "up [--config <path>] [--database <url>] [--dry-run] [--json]",
				Short: "Applies the pending migrations",
				Args:  cobra.ArbitraryArgs,
			}
			runCLI(up, "cairn-caddy migrate", migrateRun(migrateUp))
			up.Flags().Bool("dry-run", false, "List the migrations that would be applied, and apply none")
			for _, c := range []*cobra.Command{status, up} {
				addStoreFlags(c)
				c.Flags().Bool("json", false, "Print the result as an NDJSON summary event")
				cmd.AddCommand(c)
			}
		},
	})
}

// migrateTimeout bounds one migrate command.
const migrateTimeout = 10 * time.Minute

// migrateRun runs a migrate subcommand with the operator commands'
// conventions (cli.go): any error is one line and exit status 1.
func migrateRun(run func(ctx context.Context, b open.Backend, cfg open.Config, fl caddycmd.Flags, c *cli) error) func(*cli, *cobra.Command, []string) int {
	return func(c *cli, cmd *cobra.Command, args []string) int {
		if code, ok := usageArgs(c, 0, args, "no arguments"); !ok {
			return code
		}
		fl := caddycmd.Flags{FlagSet: cmd.Flags()}
		err := func() error {
			cfg, err := storeConfigFromFlags(fl)
			if err != nil {
				return err
			}
			b, err := open.New(cfg)
			if err != nil {
				return err
			}
			defer b.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), migrateTimeout)
			defer cancel()
			return run(ctx, b, cfg, fl, c)
		}()
		if err != nil {
			return c.fail(ExitFailure, err)
		}
		return ExitOK
	}
}

// oneLine joins a multi-line error message into one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// addStoreFlags adds the flags that say which store a command works on:
// --config/--adapter (read the cairn app's database and data_dir, as
// `run` would) or --database/--data-dir. Every operator command that
// opens the store takes these; storeConfigFromFlags reads them.
func addStoreFlags(c *cobra.Command) {
	c.Flags().StringP("config", "c", "", "Configuration file to read the cairn app's database and data_dir from (default: ./Caddyfile)")
	c.Flags().StringP("adapter", "a", "", "Name of config adapter to apply (default: caddyfile, or none for a .json file)")
	c.Flags().String("database", "", "PostgreSQL URL, instead of a configuration file")
	c.Flags().String("data-dir", "", "Data directory of the embedded SQLite database, instead of a configuration file")
}

// storeConfigFromFlags finds the store addStoreFlags's flags name:
// --database or --data-dir as given, otherwise the cairn app of the
// configuration file.
func storeConfigFromFlags(fl caddycmd.Flags) (open.Config, error) {
	database, dataDir, config := fl.String("database"), fl.String("data-dir"), fl.String("config")
	switch {
	case (database != "" || dataDir != "") && config != "":
		return open.Config{}, errors.New("give either --config or --database/--data-dir, not both")
	case database != "" && dataDir != "":
		return open.Config{}, errors.New("give either --database (PostgreSQL) or --data-dir (SQLite), not both")
	case database != "":
		return open.Config{Database: database}, nil
	case dataDir != "":
		return open.Config{DataDir: dataDir}, nil
	}
	if config == "" {
		if _, err := os.Stat("Caddyfile"); err != nil {
			return open.Config{}, errors.New("no configuration: pass --config <Caddyfile or JSON>, --database <postgres-url> or --data-dir <dir>")
		}
		config = "Caddyfile"
	}
	return storeConfigFromFile(config, fl.String("adapter"))
}

// storeConfigFromFile adapts the configuration file to JSON, as `run`
// does, and reads the cairn app's store settings from it. Nothing is
// provisioned: no module runs, so reading has no side effect.
func storeConfigFromFile(path, adapter string) (open.Config, error) {
	app, err := appFromFile(path, adapter)
	if err != nil {
		return open.Config{}, err
	}
	sc := app.StoreConfig()
	if err := sc.Validate(); err != nil {
		return open.Config{}, fmt.Errorf("the cairn app of %s: %w", path, err)
	}
	return sc, nil
}

// appFromFile adapts the configuration file to JSON, as `run` does, and
// decodes its cairn app strictly, without provisioning it.
func appFromFile(path, adapter string) (*App, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("configuration file %s does not exist", path)
		}
		return nil, fmt.Errorf("reading the configuration: %w", err)
	}
	if adapter == "" && !strings.EqualFold(filepath.Ext(path), ".json") {
		adapter = "caddyfile"
	}
	if adapter != "" {
		a := caddyconfig.GetAdapter(adapter)
		if a == nil {
			return nil, fmt.Errorf("unknown config adapter %q", adapter)
		}
		if raw, _, err = a.Adapt(raw, map[string]any{"filename": path}); err != nil {
			return nil, fmt.Errorf("adapting %s: %w", path, err)
		}
	}
	var cfg struct {
		Apps map[string]json.RawMessage `json:"apps"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	app := new(App)
	if rawApp, ok := cfg.Apps["cairn"]; ok {
		if err := caddy.StrictUnmarshalJSON(rawApp, app); err != nil {
			return nil, fmt.Errorf("reading the cairn app of %s: %w", path, err)
		}
	}
	return app, nil
}

// migrationJSON is one migration in --json output.
type migrationJSON struct {
	Version int    `json:"version"`
	Name    string `json:"name"`
}

func migrationsJSON[T store.Migration | store.AppliedMigration](ms []T) []migrationJSON {
	out := make([]migrationJSON, 0, len(ms))
	for _, m := range ms {
		switch m := any(m).(type) {
		case store.Migration:
			out = append(out, migrationJSON{m.Version, m.Name})
		case store.AppliedMigration:
			out = append(out, migrationJSON{m.Version, m.Name})
		}
	}
	return out
}

func migrateStatus(ctx context.Context, b open.Backend, cfg open.Config, fl caddycmd.Flags, c *cli) error {
	st, err := b.MigrationStatus(ctx)
	if err != nil {
		return fmt.Errorf("reading the schema of %s: %w", cfg, err)
	}
	if fl.Bool("json") {
		c.event("summary", map[string]any{
			"backend":    cfg.Kind(),
			"database":   cfg.String(),
			"current":    st.Current,
			"latest":     st.Latest,
			"up_to_date": st.UpToDate(),
			"pending":    migrationsJSON(st.Pending),
			"unknown":    migrationsJSON(st.Unknown),
		})
		return nil
	}
	fmt.Fprintf(c.out, "database: %s\n", cfg)
	fmt.Fprintf(c.out, "schema:   version %d; this binary knows up to version %d\n", st.Current, st.Latest)
	for _, m := range st.Pending {
		fmt.Fprintf(c.out, "pending:  %s\n", m.Name)
	}
	if err := st.Check(); err != nil {
		fmt.Fprintf(c.out, "refused:  %s\n", oneLine(err))
		return nil
	}
	if st.UpToDate() {
		fmt.Fprintln(c.out, "up to date")
	} else {
		fmt.Fprintln(c.out, "run `cairn-caddy migrate up` to apply the pending migrations")
	}
	return nil
}

func migrateUp(ctx context.Context, b open.Backend, cfg open.Config, fl caddycmd.Flags, c *cli) error {
	dryRun := fl.Bool("dry-run")
	var ms []store.Migration
	var latest int
	if dryRun {
		st, err := b.MigrationStatus(ctx)
		if err != nil {
			return fmt.Errorf("reading the schema of %s: %w", cfg, err)
		}
		if err := st.Check(); err != nil {
			return err
		}
		ms, latest = st.Pending, st.Latest
	} else {
		var err error
		if ms, err = b.Migrate(ctx); err != nil {
			return fmt.Errorf("migrating %s: %w", cfg, err)
		}
		st, err := b.MigrationStatus(ctx)
		if err != nil {
			return fmt.Errorf("reading the schema of %s: %w", cfg, err)
		}
		latest = st.Current
	}
	if fl.Bool("json") {
		c.event("summary", map[string]any{
			"backend":    cfg.Kind(),
			"database":   cfg.String(),
			"dry_run":    dryRun,
			"migrations": migrationsJSON(ms),
			"version":    latest,
		})
		return nil
	}
	fmt.Fprintf(c.out, "database: %s\n", cfg)
	verb := "applied"
	if dryRun {
		verb = "would apply"
	}
	for _, m := range ms {
		fmt.Fprintf(c.out, "%s: %s\n", verb, m.Name)
	}
	if len(ms) == 0 {
		fmt.Fprintf(c.out, "nothing to apply: the schema is at version %d\n", latest)
	} else if dryRun {
		fmt.Fprintf(c.out, "dry run: nothing was applied; the schema would be at version %d\n", latest)
	} else {
		fmt.Fprintf(c.out, "the schema is at version %d\n", latest)
	}
	return nil
}

package caddymodules

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/cairn-chat/cairn-caddy/internal/store/open"
	"github.com/cairn-chat/cairn-caddy/internal/store/sqlite"
	"github.com/cairn-chat/cairn-caddy/internal/upgrade"
	"github.com/cairn-chat/cairn-caddy/internal/version"
)

// The names are not "upgrade": Caddy's own `upgrade` (and `add-package`)
// downloads a stock Caddy build from caddyserver.com, which would drop
// cairn's modules, and RegisterCommand refuses a second "upgrade". These
// replace the binary with one the operator built or downloaded, and can
// undo it.
func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "release-info",
		Short: "Prints this binary's version, schema version and release notes",
		Long: `Prints the release version this binary was built as, the newest schema
migration it knows, and its embedded release notes: all of them, or with
--since those of the versions after the one given. upgrade-binary runs the
new binary's release-info to check its version and show its notes.

    cairn-caddy release-info --since v0.10.0

Exit status: 0 ok, 2 usage.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Args = cobra.ArbitraryArgs
			cmd.Flags().String("since", "", "Only the notes of versions after this one")
			cmd.Flags().Bool("json", false, "Print an NDJSON summary instead of text")
			runCLI(cmd, "cairn-caddy release-info", releaseInfoCommand)
		},
	})
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "upgrade-binary",
		Short: "Replaces this cairn-caddy with a newer build: backup, checks, swap, migrate, health check",
		Long: `Upgrades the installed cairn-caddy to the binary NEW, in order:

  1. asks NEW for its version (release-info) and refuses one not newer than
     the installed binary's;
  2. checks NEW accepts the store's schema (NEW migrate status) and lists
     the migrations it will apply;
  3. shows NEW's release notes since the installed version, and asks to go
     on (unless --yes; --dry-run stops here);
  4. backs the store up with the installed binary (--to, or the backup
     block's target);
  5. swaps NEW in atomically, keeping the installed binary as
     <binary>.previous, and records the upgrade in <binary>.upgrade.json;
  6. migrates the store with NEW (migrate up);
  7. runs --restart, then health-checks the new process (healthcheck) until
     it answers or --health-timeout passes.

"cairn-caddy rollback" undoes it. Caddy's own "upgrade" and "add-package"
download a stock Caddy without cairn's modules: they are not supported.

    cairn-caddy upgrade-binary --binary ./cairn-caddy-v0.11.0 --config /etc/caddy/Caddyfile \
      --to /var/backups/cairn --key-file /etc/cairn/backup.key \
      --restart "systemctl restart cairn-caddy" --health-url https://chat.example.com/xrpc/_health

Exit status: 0 upgraded, 1 failed or not confirmed, 2 usage.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Args = cobra.ArbitraryArgs
			cmd.Flags().String("binary", "", "The new cairn-caddy binary")
			addUpgradeFlags(cmd)
			runCLI(cmd, "cairn-caddy upgrade-binary", upgradeCommand)
		},
	})
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "rollback",
		Short: "Undoes upgrade-binary: the previous binary and the pre-upgrade backup",
		Long: `Puts back the binary upgrade-binary replaced (keeping the newer one as
<binary>.rolled-back) and restores the backup it took before the upgrade,
with the previous binary: everything acknowledged before the upgrade is
back; what was written after it is not (the embedded SQLite database is
moved aside as cairn.db.before-rollback-<time>, never deleted). A
PostgreSQL store is not emptied for you: create an empty database, point
--database (or the configuration) at it, and run rollback with it.
Then --restart and the health check run as for upgrade-binary.

    cairn-caddy rollback --config /etc/caddy/Caddyfile --restart "systemctl restart cairn-caddy"

Exit status: 0 rolled back, 1 failed or not confirmed, 2 usage.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Args = cobra.ArbitraryArgs
			addUpgradeFlags(cmd)
			runCLI(cmd, "cairn-caddy rollback", rollbackCommand)
		},
	})
}

func addUpgradeFlags(cmd *cobra.Command) {
	addStoreFlags(cmd)
	addAuditKeyFlag(cmd)
	addConfirmFlags(cmd)
	cmd.Flags().String("install", "", "The installed binary to replace (default: this binary)")
	cmd.Flags().String("to", "", "Backup target for the pre-upgrade backup (default: the backup block's target)")
	cmd.Flags().String("key-file", "", "File holding the backup key (default: the backup block's key_file, else $CAIRN_BACKUP_KEY)")
	cmd.Flags().String("restart", "", "Shell command that restarts the service on the swapped binary")
	cmd.Flags().String("health-url", "", "Health URL the new process must answer (default: $"+healthcheckURLEnv+")")
	cmd.Flags().Duration("health-timeout", time.Minute, "How long the new process has to answer")
	cmd.Flags().Bool("json", false, "Print NDJSON events instead of text")
}

// upgradeTimeout bounds the whole command (the backup included).
const upgradeTimeout = 6 * time.Hour

func releaseInfoCommand(c *cli, cmd *cobra.Command, args []string) int {
	if code, ok := usageArgs(c, 0, args, "no arguments"); !ok {
		return code
	}
	since, _ := cmd.Flags().GetString("since")
	if since != "" && !version.Valid(since) {
		return c.fail(ExitUsage, fmt.Errorf("--since %q: want a release version such as v0.10.0", since))
	}
	ms, err := sqlite.Migrations()
	if err != nil {
		return c.fail(ExitFailure, err)
	}
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.Name
	}
	schema := 0
	if len(ms) > 0 {
		schema = ms[len(ms)-1].Version
	}
	notes := version.Notes(since)
	if c.json {
		c.event("summary", map[string]any{"version": version.Version(), "schema_version": schema, "migrations": names, "notes": notes})
		return ExitOK
	}
	fmt.Fprintf(c.out, "version: %s\nschema:  version %d\n\n%s\n", version.Version(), schema, notes)
	return ExitOK
}

// releaseInfo is release-info's summary.
type releaseInfo struct {
	Version       string   `json:"version"`
	SchemaVersion int      `json:"schema_version"`
	Migrations    []string `json:"migrations"`
	Notes         string   `json:"notes"`
}

// upgradeFlags are what both commands read.
type upgradeFlags struct {
	install, target, keyFile, restart, healthURL string
	healthTimeout                                time.Duration
	storeArgs                                    []string
	yes, dryRun                                  bool
}

func readUpgradeFlags(cmd *cobra.Command) (upgradeFlags, error) {
	fl := caddycmd.Flags{FlagSet: cmd.Flags()}
	u := upgradeFlags{install: fl.String("install"), target: fl.String("to"), keyFile: fl.String("key-file"),
		restart: fl.String("restart"), healthURL: fl.String("health-url"), healthTimeout: fl.Duration("health-timeout"),
		yes: fl.Bool("yes"), dryRun: fl.Bool("dry-run")}
	if u.healthURL == "" {
		u.healthURL = os.Getenv(healthcheckURLEnv)
	}
	if u.install == "" {
		exe, err := os.Executable()
		if err != nil {
			return u, fmt.Errorf("finding this binary: %w (pass --install)", err)
		}
		u.install = exe
	}
	path, err := filepath.EvalSymlinks(u.install)
	if err != nil {
		return u, fmt.Errorf("--install %s: %w", u.install, err)
	}
	u.install = path
	for _, name := range []string{"config", "adapter", "database", "data-dir", "audit-key-file"} {
		if v := fl.String(name); v != "" {
			if name == "config" || name == "data-dir" || name == "audit-key-file" {
				if abs, err := filepath.Abs(v); err == nil {
					v = abs
				}
			}
			u.storeArgs = append(u.storeArgs, "--"+name, v)
		}
	}
	if u.target == "" || u.keyFile == "" {
		if path := fl.String("config"); path != "" {
			if app, err := appFromFile(path, fl.String("adapter")); err == nil && app.Backup != nil {
				if u.target == "" {
					u.target = app.Backup.Target
				}
				if u.keyFile == "" {
					u.keyFile = app.Backup.KeyFile
				}
			}
		}
	}
	return u, nil
}

// step reports one step of an upgrade or rollback.
func step(c *cli, name, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if c.json {
		c.event("status", map[string]any{"step": name, "message": msg})
		return
	}
	fmt.Fprintf(c.out, "%-9s %s\n", name+":", msg)
}

func upgradeCommand(c *cli, cmd *cobra.Command, args []string) int {
	if code, ok := usageArgs(c, 0, args, "no arguments (the new binary is --binary)"); !ok {
		return code
	}
	newBin, _ := cmd.Flags().GetString("binary")
	if newBin == "" {
		return c.fail(ExitUsage, errors.New("--binary: name the new cairn-caddy binary (see --help)"))
	}
	u, err := readUpgradeFlags(cmd)
	if err == nil {
		_, err = storeConfigFromFlags(caddycmd.Flags{FlagSet: cmd.Flags()})
	}
	if err != nil {
		return c.fail(ExitUsage, err)
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), upgradeTimeout)
	defer cancel()

	// 1. Versions: the installed one, and NEW's, which must be newer.
	var cur, next releaseInfo
	if err := upgrade.Summary(ctx, &cur, u.install, "release-info", "--json"); err != nil {
		return c.fail(ExitFailure, fmt.Errorf("asking the installed binary for its version: %w", err))
	}
	if !version.Valid(cur.Version) {
		return c.fail(ExitFailure, fmt.Errorf("the installed binary has no release version (%s): install a release build first", cur.Version))
	}
	if err := upgrade.Summary(ctx, &next, newBin, "release-info", "--json", "--since", cur.Version); err != nil {
		return c.fail(ExitFailure, fmt.Errorf("%s is not a cairn-caddy this one can upgrade to: %w", newBin, err))
	}
	if !version.Valid(next.Version) || !version.Newer(next.Version, cur.Version) {
		return c.fail(ExitFailure, fmt.Errorf("%s is version %s, not newer than the installed %s: nothing to upgrade (rollback is the way back)", newBin, next.Version, cur.Version))
	}
	step(c, "version", "%s -> %s", cur.Version, next.Version)

	// 2. NEW must accept the store's schema; these are its migrations.
	var plan struct {
		Current int `json:"current"`
		Latest  int `json:"latest"`
		Pending []struct {
			Name string `json:"name"`
		} `json:"pending"`
		Unknown []struct {
			Name string `json:"name"`
		} `json:"unknown"`
	}
	if err := upgrade.Summary(ctx, &plan, newBin, append([]string{"migrate", "status", "--json"}, u.storeArgs...)...); err != nil {
		return c.fail(ExitFailure, fmt.Errorf("checking the store with the new binary: %w", err))
	}
	if len(plan.Unknown) > 0 {
		return c.fail(ExitFailure, fmt.Errorf("the store holds migrations even %s does not know (%s): it was migrated by a newer binary", next.Version, plan.Unknown[0].Name))
	}
	pending := make([]string, len(plan.Pending))
	for i, m := range plan.Pending {
		pending[i] = m.Name
	}
	step(c, "schema", "version %d -> %d; migrations to apply: %s", plan.Current, plan.Latest, orNone(pending))

	// 3. Release notes, then confirmation.
	if c.json {
		c.event("release_notes", map[string]any{"from": cur.Version, "to": next.Version, "notes": next.Notes})
	} else {
		fmt.Fprintf(c.out, "\nRelease notes %s -> %s:\n\n%s\n\n", cur.Version, next.Version, next.Notes)
	}
	if u.target == "" {
		return c.fail(ExitUsage, errors.New("no backup target for the pre-upgrade backup: pass --to, or configure a backup block"))
	}
	if u.dryRun {
		if c.json {
			c.event("summary", map[string]any{"dry_run": true, "from": cur.Version, "to": next.Version, "migrations": pending})
		} else {
			fmt.Fprintln(c.out, "dry run: nothing was backed up, swapped or migrated")
		}
		return ExitOK
	}
	if !u.yes {
		ok, err := c.confirm(fmt.Sprintf("Upgrade %s from %s to %s (backup, swap, migrate)?", u.install, cur.Version, next.Version))
		if err != nil || !ok {
			return c.fail(ExitFailure, err)
		}
	}

	// 4. Backup with the installed binary, which matches the schema.
	backupArgs := append([]string{"backup", "--json", "--to", u.target}, u.storeArgs...)
	if u.keyFile != "" {
		backupArgs = append(backupArgs, "--key-file", u.keyFile)
	}
	var bk struct {
		Archive string `json:"archive"`
		Rows    int64  `json:"rows"`
	}
	if err := upgrade.Summary(ctx, &bk, u.install, backupArgs...); err != nil {
		return c.fail(ExitFailure, fmt.Errorf("the pre-upgrade backup failed, nothing was changed: %w", err))
	}
	step(c, "backup", "%s (%d rows) in %s", bk.Archive, bk.Rows, u.target)

	// 5. Swap, keeping the previous binary, and record the upgrade.
	previous, err := upgrade.Install(u.install, newBin)
	if err != nil {
		return c.fail(ExitFailure, fmt.Errorf("%w; the installed binary is unchanged", err))
	}
	st := upgrade.State{From: cur.Version, To: next.Version, At: time.Now().UTC(), Previous: previous,
		Target: u.target, Archive: bk.Archive, KeyFile: u.keyFile, StoreArgs: u.storeArgs}
	if err := upgrade.SaveState(u.install, st); err != nil {
		return c.fail(ExitFailure, fmt.Errorf("recording the upgrade: %w; the new binary is installed, the previous one is %s", err, previous))
	}
	step(c, "swap", "%s is %s; the previous binary is %s", u.install, next.Version, previous)

	// 6. Migrate with the new binary.
	if _, err := upgrade.Run(ctx, u.install, append([]string{"migrate", "up", "--json"}, u.storeArgs...)...); err != nil {
		return c.fail(ExitFailure, fmt.Errorf("migrating failed: %w; run `cairn-caddy rollback` to go back to %s", err, cur.Version))
	}
	step(c, "migrate", "applied %s", orNone(pending))

	// 7. Restart and health check.
	healthy, err := restartAndCheck(ctx, c, u)
	if err != nil {
		return c.fail(ExitFailure, fmt.Errorf("%w; run `cairn-caddy rollback` to go back to %s", err, cur.Version))
	}
	if c.json {
		c.event("summary", map[string]any{"from": cur.Version, "to": next.Version, "backup": bk.Archive, "previous": previous,
			"migrations": pending, "healthy": healthy})
	} else {
		fmt.Fprintf(c.out, "upgraded to %s; `cairn-caddy rollback` goes back to %s and the backup %s\n", next.Version, cur.Version, bk.Archive)
	}
	return ExitOK
}

func rollbackCommand(c *cli, cmd *cobra.Command, args []string) int {
	if code, ok := usageArgs(c, 0, args, "no arguments"); !ok {
		return code
	}
	u, err := readUpgradeFlags(cmd)
	if err != nil {
		return c.fail(ExitUsage, err)
	}
	st, err := upgrade.LoadState(u.install)
	if err != nil {
		return c.fail(ExitFailure, err)
	}
	// The store flags of the upgrade, unless given again (a new, empty
	// PostgreSQL database, say).
	storeArgs := st.StoreArgs
	if len(u.storeArgs) > 0 {
		storeArgs = u.storeArgs
	}
	keyFile := st.KeyFile
	if u.keyFile != "" {
		keyFile = u.keyFile
	}
	fl := caddycmd.Flags{FlagSet: cmd.Flags()}
	for i := 0; i+1 < len(storeArgs); i += 2 {
		_ = fl.Set(strings.TrimPrefix(storeArgs[i], "--"), storeArgs[i+1])
	}
	cfg, err := storeConfigFromFlags(fl)
	if err != nil {
		return c.fail(ExitFailure, err)
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), upgradeTimeout)
	defer cancel()
	step(c, "plan", "%s back to %s (%s), then restore %s from %s into %s; writes after %s are not kept",
		u.install, st.From, st.Previous, st.Archive, st.Target, cfg, st.At.Format(time.RFC3339))
	if u.dryRun {
		if c.json {
			c.event("summary", map[string]any{"dry_run": true, "from": st.To, "to": st.From, "archive": st.Archive})
		} else {
			fmt.Fprintln(c.out, "dry run: nothing was changed")
		}
		return ExitOK
	}
	if !u.yes {
		ok, err := c.confirm(fmt.Sprintf("Roll back to %s and restore the backup of %s (writes since then are lost)?", st.From, st.At.Format(time.RFC3339)))
		if err != nil || !ok {
			return c.fail(ExitFailure, err)
		}
	}
	if err := upgrade.Revert(u.install, st.Previous); err != nil {
		return c.fail(ExitFailure, err)
	}
	step(c, "swap", "%s is %s again; the newer binary is %s", u.install, st.From, u.install+upgrade.RolledBackSuffix)

	force := false
	if cfg.Kind() == open.SQLite {
		moved, err := open.SetAside(cfg, ".before-rollback-"+time.Now().UTC().Format("20060102T150405Z"))
		if err != nil {
			return c.fail(ExitFailure, fmt.Errorf("%w; the previous binary is installed, the store is untouched", err))
		}
		step(c, "store", "the upgraded database is kept as %s", orNone(moved))
		// The store is empty now; --force lets the archive's data files
		// (keys) replace ones changed since the upgrade.
		force = true
	} else {
		// A PostgreSQL database is not emptied here; restore refuses one
		// that holds data, naming what to do.
		step(c, "store", "restoring into %s, which must be empty", cfg)
	}
	restoreArgs := append([]string{"restore", "--json", "--from", st.Target, "--archive", st.Archive, "--yes"}, storeArgs...)
	if keyFile != "" {
		restoreArgs = append(restoreArgs, "--key-file", keyFile)
	}
	if force {
		restoreArgs = append(restoreArgs, "--force")
	}
	var res struct {
		Rows int64 `json:"rows"`
	}
	if err := upgrade.Summary(ctx, &res, u.install, restoreArgs...); err != nil {
		return c.fail(ExitFailure, fmt.Errorf("restoring %s: %w; the previous binary is installed", st.Archive, err))
	}
	step(c, "restore", "%s: %d rows", st.Archive, res.Rows)
	if err := os.Rename(u.install+upgrade.StateSuffix, u.install+upgrade.StateSuffix+".done"); err != nil {
		return c.fail(ExitFailure, fmt.Errorf("the rollback is done, but its record could not be closed: %w", err))
	}
	healthy, err := restartAndCheck(ctx, c, u)
	if err != nil {
		return c.fail(ExitFailure, err)
	}
	if c.json {
		c.event("summary", map[string]any{"version": st.From, "archive": st.Archive, "rows": res.Rows, "healthy": healthy})
	} else {
		fmt.Fprintf(c.out, "rolled back to %s with the backup %s\n", st.From, st.Archive)
	}
	return ExitOK
}

// restartAndCheck runs --restart and waits for the health check to pass;
// healthy is false when there was nothing to check (no restart command
// and no health URL).
func restartAndCheck(ctx context.Context, c *cli, u upgradeFlags) (healthy bool, err error) {
	if u.restart != "" {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		out, err := exec.CommandContext(rctx, "/bin/sh", "-c", u.restart).CombinedOutput()
		cancel()
		if err != nil {
			return false, fmt.Errorf("the restart command failed: %v: %s", err, oneLine(errors.New(string(out)+" ")))
		}
		step(c, "restart", "%s", u.restart)
	}
	if u.healthURL == "" {
		step(c, "health", "no --health-url: restart the service if --restart did not, and check it with `cairn-caddy healthcheck`")
		return false, nil
	}
	deadline := time.Now().Add(u.healthTimeout)
	for {
		_, err := upgrade.Run(ctx, u.install, "healthcheck", "--url", u.healthURL, "--timeout", "5s")
		if err == nil {
			step(c, "health", "%s answers", u.healthURL)
			return true, nil
		}
		if time.Now().After(deadline) {
			return false, fmt.Errorf("the new process did not answer its health check within %s: %w", u.healthTimeout, err)
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func orNone(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	return strings.Join(xs, ", ")
}

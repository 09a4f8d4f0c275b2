package caddymodules

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/dustin/go-humanize"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/cairn-chat/cairn-caddy/internal/audit"
	"github.com/cairn-chat/cairn-caddy/internal/backup"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "backup",
		Short: "Writes an encrypted archive of the store and the data directory's key files",
		Long: `Takes one consistent snapshot of the delivery store while the gateway keeps
serving, and writes it with the data directory's files (log-hash key,
service identity keys) and optionally Caddy's storage to a target, as one
archive encrypted with AES-256-GCM under the backup key.

    CAIRN_BACKUP_KEY=$(cat /run/secrets/backup-key) \
      cairn-caddy backup --config /etc/caddy/Caddyfile --to /var/backups/cairn --keep 7

The key comes from --key-file or CAIRN_BACKUP_KEY (generate one with
"openssl rand -hex 32"); keep it away from the archives. Targets: a
directory, s3://bucket/prefix or rsync://user@host/path (see
docs/operations.md). Exit status 0 on success, 1 on any failure.`,
		CobraFunc: func(cmd *cobra.Command) {
			addStoreFlags(cmd)
			addBackupFlags(cmd)
			cmd.Flags().String("data-files", "", "Directory whose files to archive (default: the cairn app's data_dir)")
			cmd.Flags().String("caddy-storage", "", "Also archive Caddy's file storage directory (certificates, ACME accounts)")
			cmd.Flags().Int("keep", 0, "After the backup, delete all but the newest N archives of the target")
			cmd.Flags().Bool("dry-run", false, "Check the store, key and target, and write nothing")
			cmd.Args = cobra.NoArgs
			cmd.RunE = backupRunE("backup", runBackup)
		},
	})
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "restore",
		Short: "Restores an archive into the store, verifying it end to end first",
		Long: `Restores an archive "cairn-caddy backup" wrote. The whole archive is checked
first (key, authentication of every encrypted package, row counts and
digests); then it is restored in one transaction, so a wrong key, a
corrupted or truncated archive, or any failure leaves the store as it was.
A store that holds data is refused unless --force; --force asks for
confirmation unless --yes. An archive taken from SQLite restores into
PostgreSQL and back: this is how a node outgrows the embedded database.

    cairn-caddy restore --database postgres://cairn@db/cairn --data-files /var/lib/cairn \
      --from /var/backups/cairn --key-file /root/cairn-backup.key

Stop the gateway before restoring. Exit status 0 on success, 1 on any failure.`,
		CobraFunc: func(cmd *cobra.Command) {
			addStoreFlags(cmd)
			addBackupFlags(cmd)
			cmd.Flags().String("archive", "latest", "Name of the archive to restore (see `cairn-caddy backups list`)")
			cmd.Flags().String("data-files", "", "Directory to restore the archived files into (default: the cairn app's data_dir)")
			cmd.Flags().String("caddy-storage", "", "Directory to restore archived Caddy storage into (default: leave it out)")
			cmd.Flags().Bool("force", false, "Replace a store that holds data, and files that differ")
			cmd.Flags().BoolP("yes", "y", false, "Do not ask for confirmation")
			cmd.Flags().Bool("dry-run", false, "Verify the archive end to end and restore nothing")
			cmd.Args = cobra.NoArgs
			cmd.RunE = backupRunE("restore", runRestore)
		},
	})
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "backups",
		Short: "Lists the archives of a backup target",
		CobraFunc: func(cmd *cobra.Command) {
			list := &cobra.Command{
				Use:   "list --from <target> [--json]",
				Short: "Lists the archives of a backup target, newest first",
				Args:  cobra.NoArgs,
				RunE:  backupRunE("backups list", runBackupsList),
			}
			list.Flags().String("from", "", "Backup target: a directory, s3://bucket/prefix or rsync://user@host/path")
			list.Flags().Bool("json", false, "Print NDJSON events")
			cmd.AddCommand(list)
		},
	})
}

func addBackupFlags(cmd *cobra.Command) {
	addAuditKeyFlag(cmd)
	cmd.Flags().String("to", "", "Backup target: a directory, s3://bucket/prefix or rsync://user@host/path")
	cmd.Flags().String("from", "", "Same as --to: the target to read")
	cmd.Flags().String("key-file", "", "File holding the backup key (default: the "+backup.KeyEnv+" environment variable)")
	cmd.Flags().Bool("json", false, "Print NDJSON events (status, summary, error) instead of text")
}

// backupTimeout bounds one backup command.
const backupTimeout = 6 * time.Hour

// backupMemoryLimit is the backup commands' soft limit on Go's memory.
const backupMemoryLimit = 48 << 20

// cliOutput prints a command's events: NDJSON with --json (restic's
// message_type convention), otherwise text lines, with a progress bar on
// stderr when it is a terminal.
type cliOutput struct {
	json bool
	out  io.Writer
	err  io.Writer
	tty  bool
	bar  *progressbar.ProgressBar
	last time.Time
}

func (o *cliOutput) event(kind string, fields map[string]any) {
	if !o.json {
		return
	}
	ev := map[string]any{"message_type": kind}
	for k, v := range fields {
		ev[k] = v
	}
	b, _ := json.Marshal(ev)
	fmt.Fprintln(o.out, string(b))
}

func (o *cliOutput) line(format string, args ...any) {
	if o.json {
		return
	}
	o.finishBar()
	fmt.Fprintf(o.out, format+"\n", args...)
}

// progress reports rows and bytes: a bar on a terminal, a plain line at
// most every 5 s otherwise, a status event with --json.
func (o *cliOutput) progress(verb string, p backup.Progress) {
	switch {
	case o.json:
		o.event("status", map[string]any{"action": verb, "table": p.Table, "rows": p.Rows, "bytes": p.Bytes, "total_rows": p.TotalRows})
	case o.tty:
		if o.bar == nil {
			total := p.TotalRows
			if total == 0 {
				total = -1
			}
			o.bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(o.err), progressbar.OptionSetDescription(verb+" rows"),
				progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("rows"),
				progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(200*time.Millisecond))
		}
		o.bar.Describe(fmt.Sprintf("%s %s (%s)", verb, p.Table, humanize.Bytes(uint64(p.Bytes))))
		_ = o.bar.Set64(p.Rows)
	default:
		if time.Since(o.last) < 5*time.Second {
			return
		}
		o.last = time.Now()
		fmt.Fprintf(o.err, "%s: %s, %d rows, %s\n", verb, p.Table, p.Rows, humanize.Bytes(uint64(p.Bytes)))
	}
}

func (o *cliOutput) finishBar() {
	if o.bar != nil {
		_ = o.bar.Finish()
		fmt.Fprintln(o.err)
		o.bar = nil
	}
}

// backupRunE runs a backup command: any error becomes one line on stderr
// (or an error event with --json) and exit status 1.
func backupRunE(name string, run func(ctx context.Context, fl caddycmd.Flags, o *cliOutput, in io.Reader) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		fl := caddycmd.Flags{FlagSet: cmd.Flags()}
		o := &cliOutput{json: fl.Bool("json"), out: cmd.OutOrStdout(), err: cmd.ErrOrStderr()}
		if f, ok := o.err.(*os.File); ok {
			o.tty = term.IsTerminal(int(f.Fd()))
		}
		// The archive streams in 1 MiB chunks; a soft memory limit keeps
		// the garbage collector from letting the heap grow past what that
		// needs, whatever the database's size (GOMEMLIMIT overrides it).
		if os.Getenv("GOMEMLIMIT") == "" {
			debug.SetMemoryLimit(backupMemoryLimit)
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), backupTimeout)
		defer cancel()
		err := run(ctx, fl, o, cmd.InOrStdin())
		o.finishBar()
		if err != nil {
			if o.json {
				o.event("error", map[string]any{"error": oneLine(err), "exit_code": 1})
			} else {
				fmt.Fprintf(cmd.ErrOrStderr(), "cairn-caddy %s: %s\n", name, oneLine(err))
			}
		}
		return err
	}
}

// targetFromFlags parses --to or --from.
func targetFromFlags(fl caddycmd.Flags) (backup.Target, error) {
	var spec, from string
	if fl.Lookup("to") != nil {
		spec = fl.String("to")
	}
	if from = fl.String("from"); from != "" {
		if spec != "" && spec != from {
			return nil, errors.New("give --to or --from, not both")
		}
		spec = from
	}
	if spec == "" {
		return nil, errors.New("no backup target: pass --to (or --from) <directory | s3://bucket/prefix | rsync://user@host/path>")
	}
	return backup.ParseTarget(spec)
}

// keyFromFlags loads the backup key and refuses a key file kept inside a
// directory target: the key must never sit beside the archives.
func keyFromFlags(fl caddycmd.Flags, t backup.Target) ([]byte, error) {
	file := fl.String("key-file")
	if d, ok := t.(backup.Dir); ok && file != "" {
		if inside(file, d.Path) {
			return nil, fmt.Errorf("the key file %s is inside the backup target %s: keep the key away from the archives", file, d.Path)
		}
	}
	return backup.LoadKey(file)
}

// inside reports whether path is dir or under it.
func inside(path, dir string) bool {
	p, err1 := filepath.Abs(path)
	d, err2 := filepath.Abs(dir)
	if err1 != nil || err2 != nil {
		return false
	}
	rel, err := filepath.Rel(d, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

func runBackup(ctx context.Context, fl caddycmd.Flags, o *cliOutput, _ io.Reader) error {
	cfg, err := storeConfigFromFlags(fl)
	if err != nil {
		return err
	}
	t, err := targetFromFlags(fl)
	if err != nil {
		return err
	}
	key, err := keyFromFlags(fl, t)
	if err != nil {
		return err
	}
	opts := backup.Options{Store: cfg, Key: key, DataDir: fl.String("data-files"), CaddyStorage: fl.String("caddy-storage")}
	if opts.DataDir == "" {
		opts.DataDir = cfg.DataDir
	}
	if d, ok := t.(backup.Dir); ok && opts.DataDir != "" && inside(d.Path, opts.DataDir) {
		opts.Exclude = append(opts.Exclude, d.Path)
	}
	if fl.Bool("dry-run") {
		if _, err := t.List(ctx); err != nil {
			return fmt.Errorf("reading %s: %w", t, err)
		}
		if _, err := backup.Write(ctx, io.Discard, opts); err != nil {
			return err
		}
		o.event("summary", map[string]any{"dry_run": true, "target": t.String(), "database": cfg.String()})
		o.line("dry run: %s can be backed up to %s; nothing was written", cfg, t)
		return nil
	}
	// The backup is audited in the store it reads: find the key first, so
	// that a missing one stops the command before it writes anything.
	auditKey, err := auditKeyFromFlags(fl, cfg.DataDir)
	if err != nil {
		return err
	}
	opts.Progress = func(p backup.Progress) { o.progress("backing up", p) }
	start := time.Now()
	a, m, err := backup.Run(ctx, t, opts)
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	if err := recordOffline(ctx, cfg, auditKey, audit.Event{Type: audit.TypeBackupCreate, Actor: localActor(), Metadata: map[string]any{
		"archive": a.Name, "bytes": a.Size, "rows": m.Rows(), "tables": len(m.TableStats), "target": t.String(), "scheduled": false,
	}}); err != nil {
		return fmt.Errorf("the archive %s is written, but recording it in the audit log failed: %w", a.Name, err)
	}
	o.event("summary", map[string]any{"archive": a.Name, "target": t.String(), "bytes": a.Size, "rows": m.Rows(),
		"tables": m.TableStats, "files": len(m.Files), "schema_version": m.SchemaVersion, "duration_seconds": elapsed.Seconds()})
	o.line("wrote %s to %s: %d rows, %d files, %s in %s", a.Name, t, m.Rows(), len(m.Files), humanize.Bytes(uint64(a.Size)), elapsed.Round(time.Millisecond))
	if keep := fl.Int("keep"); keep > 0 {
		deleted, err := backup.Prune(ctx, t, keep)
		if err != nil {
			return err
		}
		o.event("pruned", map[string]any{"deleted": deleted, "keep": keep})
		for _, d := range deleted {
			o.line("deleted %s (keeping the newest %d)", d, keep)
		}
	}
	return nil
}

func runRestore(ctx context.Context, fl caddycmd.Flags, o *cliOutput, in io.Reader) error {
	cfg, err := storeConfigFromFlags(fl)
	if err != nil {
		return err
	}
	t, err := targetFromFlags(fl)
	if err != nil {
		return err
	}
	key, err := keyFromFlags(fl, t)
	if err != nil {
		return err
	}
	name := fl.String("archive")
	if name == "latest" {
		// Resolve it now, so the audit log names the archive restored.
		if last, ok, err := backup.Last(ctx, t); err == nil && ok {
			name = last.Name
		}
	}
	path, err := backup.Fetch(ctx, t, name, "")
	if err != nil {
		return err
	}
	defer os.Remove(path)
	if fl.Bool("dry-run") {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		m, err := backup.Verify(f, key)
		if err != nil {
			return err
		}
		o.event("summary", map[string]any{"dry_run": true, "verified": true, "rows": m.Rows(), "tables": m.TableStats,
			"files": len(m.Files), "schema_version": m.SchemaVersion, "source_backend": m.SourceBackend, "created_at": m.CreatedAt})
		o.line("dry run: the archive of %s (%s, schema version %d) is intact: %d rows, %d files; nothing was restored",
			m.CreatedAt.Format(time.RFC3339), m.SourceBackend, m.SchemaVersion, m.Rows(), len(m.Files))
		return nil
	}
	force := fl.Bool("force")
	if force && !fl.Bool("yes") {
		if err := confirm(in, o, fmt.Sprintf("This replaces everything in %s. Type \"yes\" to go on: ", cfg)); err != nil {
			return err
		}
	}
	opts := backup.RestoreOptions{Store: cfg, Key: key, DataDir: fl.String("data-files"), CaddyStorage: fl.String("caddy-storage"), Force: force,
		Progress: func(p backup.Progress) { o.progress("restoring", p) }}
	start := time.Now()
	res, err := backup.Restore(ctx, path, opts)
	if err != nil {
		return err
	}
	m := res.Manifest
	// The restored store's audit log carries on from the archive's chain,
	// under the key the restored data files (or the configuration) hold.
	dataDir := opts.DataDir
	if dataDir == "" {
		dataDir = cfg.DataDir
	}
	auditKey, err := auditKeyFromFlags(fl, dataDir)
	if err == nil {
		err = recordOffline(ctx, cfg, auditKey, audit.Event{Type: audit.TypeBackupRestore, Actor: localActor(), Metadata: map[string]any{
			"archive": name, "rows": m.Rows(), "tables": len(m.TableStats), "files": len(res.Files),
			"source_backend": m.SourceBackend, "created_at": m.CreatedAt, "target": t.String(),
		}})
	}
	if err != nil {
		return fmt.Errorf("the store is restored, but recording the restore in the audit log failed: %w", err)
	}
	o.event("summary", map[string]any{"restored": true, "database": cfg.String(), "rows": m.Rows(), "tables": m.TableStats,
		"files": res.Files, "skipped_caddy_files": res.SkippedCaddy, "duration_seconds": time.Since(start).Seconds()})
	o.line("restored %d rows and %d files into %s in %s", m.Rows(), len(res.Files), cfg, time.Since(start).Round(time.Millisecond))
	if res.SkippedCaddy > 0 {
		o.line("the archive holds %d files of Caddy's storage, not restored: pass --caddy-storage <dir> to restore them", res.SkippedCaddy)
	}
	return nil
}

// confirm asks on a terminal; elsewhere it refuses, asking for --yes.
func confirm(in io.Reader, o *cliOutput, prompt string) error {
	f, ok := in.(*os.File)
	if o.json || !ok || !term.IsTerminal(int(f.Fd())) {
		return errors.New("--force replaces the store's content: pass --yes to confirm when not on a terminal")
	}
	fmt.Fprint(o.err, prompt)
	answer, _ := bufio.NewReader(in).ReadString('\n')
	if strings.TrimSpace(answer) != "yes" {
		return errors.New("not confirmed: nothing was restored")
	}
	return nil
}

func runBackupsList(ctx context.Context, fl caddycmd.Flags, o *cliOutput, _ io.Reader) error {
	t, err := targetFromFlags(fl)
	if err != nil {
		return err
	}
	as, err := t.List(ctx)
	if err != nil {
		return fmt.Errorf("listing %s: %w", t, err)
	}
	for _, a := range as {
		o.event("archive", map[string]any{"name": a.Name, "size": a.Size, "created": a.Created})
		o.line("%s  %8s  %s", a.Created.Format(time.RFC3339), humanize.Bytes(uint64(a.Size)), a.Name)
	}
	o.event("summary", map[string]any{"target": t.String(), "archives": len(as)})
	if len(as) == 0 {
		o.line("%s holds no archive", t)
	}
	return nil
}

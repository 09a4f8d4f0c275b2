package caddymodules

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/cairn-chat/cairn-caddy/internal/audit"
	"github.com/cairn-chat/cairn-caddy/internal/ban"
	"github.com/cairn-chat/cairn-caddy/internal/operator"
	"github.com/cairn-chat/cairn-caddy/internal/redact"
	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/store/open"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "status",
		Short: "Shows a running node's status through its operator API",
		Long: `Shows the version, schema version, store and Redis health, open event
streams, last backup and retention passes of a running node, from its
operator API on the internal site.

    CAIRN_OPERATOR_TOKEN=… cairn-caddy status
    cairn-caddy status --operator-url http://10.0.0.5:9180 --token-file /run/secrets/op --json

Exit status: 0 healthy, 1 unreachable or unhealthy, 2 usage.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Args = cobra.ArbitraryArgs
			addOperatorFlags(cmd)
			runCLI(cmd, "cairn-caddy status", statusCommand)
		},
	})
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "audit",
		Short: "Queries a running node's audit log, or verifies the audit chain",
		Long: `Lists the audit log, newest first, from the running node's operator API,
with filters:

    cairn-caddy audit --type ban.add --since 2026-11-01T00:00:00Z
    cairn-caddy audit --actor alice@example.com --limit 20 --json

"audit verify" checks the tamper-evident chain on the store itself (the
node may be running): it reports the first row altered, inserted or
deleted. It needs the audit key: from the configuration (--config), the
data directory, $CAIRN_AUDIT_KEY or --audit-key-file.

    cairn-caddy audit verify --config /etc/caddy/Caddyfile

Exit status: 0 ok, 1 failure, 2 usage, 3 the chain is broken.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Args = cobra.ArbitraryArgs
			addOperatorFlags(cmd)
			cmd.Flags().StringArray("type", nil, "Only events of this type (repeatable)")
			cmd.Flags().String("actor", "", "Only events of this actor (an operator's subject, or a keyed hash)")
			cmd.Flags().String("since", "", "Only events at or after this RFC 3339 time")
			cmd.Flags().String("until", "", "Only events before this RFC 3339 time")
			cmd.Flags().Int("limit", operator.DefaultAuditLimit, "At most this many events")
			runCLI(cmd, "cairn-caddy audit", auditCommand)

			verify := &cobra.Command{
				Use:   "verify [--config <path>] [--database <url>] [--data-dir <dir>] [--audit-key-file <path>] [--json]",
				Short: "Verifies the audit log's MAC chain on the store",
				Args:  cobra.ArbitraryArgs,
			}
			addStoreFlags(verify)
			addAuditKeyFlag(verify)
			verify.Flags().Bool("json", false, "Print NDJSON events instead of text")
			runCLI(verify, "cairn-caddy audit verify", auditVerifyCommand)
			cmd.AddCommand(verify)
		},
	})
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "ban",
		Short: "Bars an account (DID) from this service, through the operator API",
		Long: `Bars an account from this service: its XRPC calls are refused with
403 AccountBanned on every node within seconds. Only the keyed hash of the
DID is stored. It asks for confirmation unless --yes; --dry-run shows the
hash and whether the account is banned already, and changes nothing.

    cairn-caddy ban did:plc:ewvi7nxzyoun6zhxrhs64oiz
    cairn-caddy ban --dry-run did:plc:ewvi7nxzyoun6zhxrhs64oiz
    cairn-caddy ban list --json

Exit status: 0 ok, 1 failure or not confirmed, 2 usage.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Args = cobra.ArbitraryArgs
			addOperatorFlags(cmd)
			addConfirmFlags(cmd)
			runCLI(cmd, "cairn-caddy ban", banCommand(true))
			list := &cobra.Command{Use: "list [--json]", Short: "Lists the bans (keyed hashes)", Args: cobra.ArbitraryArgs}
			addOperatorFlags(list)
			runCLI(list, "cairn-caddy ban list", banListCommand)
			cmd.AddCommand(list)
		},
	})
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "unban",
		Short: "Lifts a ban, by DID or by the hash `ban list` shows",
		Long: `Lifts a ban through the operator API. It asks for confirmation unless
--yes; --dry-run changes nothing.

    cairn-caddy unban did:plc:ewvi7nxzyoun6zhxrhs64oiz
    cairn-caddy unban h:5f0c2a4e9b1d7c33 --yes

Exit status: 0 ok, 1 failure or not confirmed, 2 usage.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Args = cobra.ArbitraryArgs
			addOperatorFlags(cmd)
			addConfirmFlags(cmd)
			runCLI(cmd, "cairn-caddy unban", banCommand(false))
		},
	})
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "healthcheck",
		Short: "Exits 0 if the node answers /xrpc/_health, 1 if not (container probes)",
		Long: `Checks that a node answers its health path, for container and Compose
health checks where there is no curl. The URL defaults to
$CAIRN_HEALTHCHECK_URL, else https://$CAIRN_DOMAIN:$CAIRN_HTTPS_PORT/xrpc/_health
(localhost and port 443 when unset), connected to this machine's loopback
whatever the name resolves to: the public site answers only its own name,
and a container cannot reach its host's public address. On loopback the
certificate is not verified (the node may use Caddy's internal CA, or not
have its certificate yet); elsewhere it is.

    healthcheck: { test: ["CMD", "cairn-caddy", "healthcheck"] }

Exit status: 0 healthy, 1 not, 2 usage.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Args = cobra.ArbitraryArgs
			cmd.Flags().String("url", "", "Health URL to check")
			cmd.Flags().Duration("timeout", 5*time.Second, "Give up after this long")
			cmd.Flags().Bool("json", false, "Print an NDJSON summary instead of text")
			runCLI(cmd, "cairn-caddy healthcheck", healthcheckCommand)
		},
	})
}

func addConfirmFlags(c *cobra.Command) {
	c.Flags().BoolP("yes", "y", false, "Do not ask for confirmation")
	c.Flags().Bool("dry-run", false, "Show what would change, and change nothing")
}

// operatorCallTimeout bounds one command's calls to the operator API.
const operatorCallTimeout = time.Minute

// getOperator GETs path from the operator API into out; on failure it
// reports one line and returns the exit code.
func getOperator(c *cli, cmd *cobra.Command, path string, out any) (int, bool) {
	oc, err := operatorClientFromFlags(cmd)
	if err != nil {
		return c.fail(ExitFailure, err), false
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), operatorCallTimeout)
	defer cancel()
	if err := oc.call(ctx, http.MethodGet, path, nil, out); err != nil {
		return c.fail(ExitFailure, err), false
	}
	return ExitOK, true
}

func statusCommand(c *cli, cmd *cobra.Command, args []string) int {
	if code, ok := usageArgs(c, 0, args, "no arguments"); !ok {
		return code
	}
	var st operator.Status
	if code, ok := getOperator(c, cmd, "status", &st); !ok {
		return code
	}
	healthy := st.Store.Healthy && (st.Redis == nil || st.Redis.Healthy)
	if c.json {
		c.event("summary", map[string]any{"status": st, "healthy": healthy})
	} else {
		w := c.out
		fmt.Fprintf(w, "version:      %s\n", st.Version)
		fmt.Fprintf(w, "schema:       version %d (this binary knows %d)\n", st.Schema.Current, st.Schema.Latest)
		fmt.Fprintf(w, "store:        %s, %s\n", st.Store.Backend, healthWord(st.Store))
		if st.Redis != nil {
			fmt.Fprintf(w, "redis:        %s\n", healthWord(*st.Redis))
		} else {
			fmt.Fprintf(w, "redis:        not configured\n")
		}
		fmt.Fprintf(w, "open streams: %d\n", st.OpenStreams)
		if st.LastBackup != nil && st.LastBackupAgeSeconds != nil {
			fmt.Fprintf(w, "last backup:  %s (%s ago)\n", st.LastBackup.Format(time.RFC3339), time.Duration(*st.LastBackupAgeSeconds)*time.Second)
		} else {
			fmt.Fprintf(w, "last backup:  none\n")
		}
		last := "never"
		if st.Retention.LastRun != nil {
			last = st.Retention.LastRun.Format(time.RFC3339)
		}
		fmt.Fprintf(w, "retention:    %d passes, %d failed, last %s\n", st.Retention.Runs, st.Retention.Failures, last)
	}
	if !healthy {
		if !c.json {
			fmt.Fprintf(c.errOut, "%s: the node is unhealthy\n", c.name)
		}
		return ExitFailure
	}
	return ExitOK
}

func healthWord(h operator.Health) string {
	if h.Healthy {
		return "healthy"
	}
	return "UNHEALTHY (" + h.Error + ")"
}

func auditCommand(c *cli, cmd *cobra.Command, args []string) int {
	if len(args) > 0 {
		return c.fail(ExitUsage, fmt.Errorf("unknown subcommand %q: want no argument, or verify (see --help)", args[0]))
	}
	q := url.Values{}
	types, _ := cmd.Flags().GetStringArray("type")
	for _, t := range types {
		q.Add("type", t)
	}
	for _, name := range []string{"actor", "since", "until"} {
		if v, _ := cmd.Flags().GetString(name); v != "" {
			q.Set(name, v)
		}
	}
	limit, _ := cmd.Flags().GetInt("limit")
	if limit < 1 {
		return c.fail(ExitUsage, fmt.Errorf("--limit %d: want a positive number", limit))
	}
	// Check the filters here, so a mistake is a usage error.
	if _, err := operator.ParseAuditQuery(q); err != nil {
		return c.fail(ExitUsage, err)
	}
	oc, err := operatorClientFromFlags(cmd)
	if err != nil {
		return c.fail(ExitFailure, err)
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), operatorCallTimeout)
	defer cancel()
	shown := 0
	for shown < limit {
		page := min(limit-shown, operator.MaxAuditLimit)
		q.Set("limit", fmt.Sprint(page))
		var p operator.AuditPage
		if err := oc.call(ctx, http.MethodGet, "audit?"+q.Encode(), nil, &p); err != nil {
			return c.fail(ExitFailure, err)
		}
		for _, e := range p.Events {
			if c.json {
				c.event("audit_event", map[string]any{"seq": e.Seq, "time": e.Time, "type": e.Type, "actor": e.Actor,
					"target": e.Target, "metadata": e.Metadata, "ip": e.IP})
			} else {
				fmt.Fprintf(c.out, "%6d  %s  %-22s  actor=%s target=%s %s\n", e.Seq, e.Time.Format(time.RFC3339),
					e.Type, orDash(e.Actor), orDash(e.Target), e.Metadata)
			}
		}
		shown += len(p.Events)
		if p.Cursor == "" {
			break
		}
		q.Set("cursor", p.Cursor)
	}
	if c.json {
		c.event("summary", map[string]any{"events": shown})
	}
	return ExitOK
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// auditSchemaVersion is the schema migration that adds the audit log
// (0003_audit_bans.sql).
const auditSchemaVersion = 3

// auditVerifyTimeout bounds a verification.
const auditVerifyTimeout = time.Hour

func auditVerifyCommand(c *cli, cmd *cobra.Command, args []string) int {
	if code, ok := usageArgs(c, 0, args, "no arguments"); !ok {
		return code
	}
	fl := caddycmd.Flags{FlagSet: cmd.Flags()}
	cfg, key, err := auditVerifyTarget(fl)
	if err != nil {
		return c.fail(ExitFailure, err)
	}
	b, err := open.New(cfg)
	if err != nil {
		return c.fail(ExitFailure, err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), auditVerifyTimeout)
	defer cancel()
	ms, err := b.MigrationStatus(ctx)
	if err != nil {
		return c.fail(ExitFailure, fmt.Errorf("reading %s: %w", cfg, err))
	}
	if ms.Current < auditSchemaVersion {
		return c.fail(ExitFailure, fmt.Errorf("%s has no audit log yet (schema version %d): run the node or `cairn-caddy migrate up` first", cfg, ms.Current))
	}
	al, ok := b.(store.AuditLog)
	if !ok {
		return c.fail(ExitFailure, fmt.Errorf("the %s store keeps no audit log", cfg.Kind()))
	}
	update, done := c.progress("verifying the audit chain", -1)
	rep, err := audit.Verify(ctx, al, key, update)
	done()
	if err != nil {
		return c.fail(ExitFailure, fmt.Errorf("reading the audit log of %s: %w", cfg, err))
	}
	if c.json {
		c.event("summary", map[string]any{"database": cfg.String(), "rows": rep.Rows, "anchor_seq": rep.Anchor.Seq,
			"head_seq": rep.Head.Seq, "head_mac": fmt.Sprintf("%x", rep.Head.MAC), "ok": rep.Problem == nil, "problem": rep.Problem})
	} else {
		fmt.Fprintf(c.out, "database: %s\n", cfg)
		fmt.Fprintf(c.out, "checked:  %d rows, from row %d (anchor) to row %d\n", rep.Rows, rep.Anchor.Seq, rep.Head.Seq)
		fmt.Fprintf(c.out, "head:     %d %x\n", rep.Head.Seq, rep.Head.MAC)
	}
	if rep.Problem != nil {
		if !c.json {
			fmt.Fprintf(c.out, "BROKEN:   row %d: %s\n", rep.Problem.Seq, rep.Problem.Detail)
		}
		fmt.Fprintf(c.errOut, "%s: the audit chain is broken at row %d (%s)\n", c.name, rep.Problem.Seq, rep.Problem.Kind)
		return ExitTampered
	}
	if !c.json {
		fmt.Fprintln(c.out, "ok:       the chain verifies; note the head to detect a later deletion of the newest rows")
	}
	return ExitOK
}

// auditVerifyTarget finds the store and the audit key for audit verify.
func auditVerifyTarget(fl caddycmd.Flags) (open.Config, []byte, error) {
	cfg, err := storeConfigFromFlags(fl)
	if err != nil {
		return open.Config{}, nil, err
	}
	key, err := auditKeyFromFlags(fl, cfg.DataDir)
	return cfg, key, err
}

// auditKeyFromFlags finds the audit key as the node finds it:
// --audit-key-file first, then what the configuration (or the
// environment, or dataDir/audit.key) says.
func auditKeyFromFlags(fl caddycmd.Flags, dataDir string) ([]byte, error) {
	if file := fl.String("audit-key-file"); file != "" {
		key, err := redact.ReadKeyFile(file)
		if err != nil {
			return nil, fmt.Errorf("--audit-key-file: %w", err)
		}
		return key, nil
	}
	var ac *AuditConfig
	if path := fl.String("config"); path != "" || (fl.String("database") == "" && fl.String("data-dir") == "") {
		if path == "" {
			path = "Caddyfile"
		}
		app, err := appFromFile(path, fl.String("adapter"))
		if err != nil {
			return nil, err
		}
		ac = app.Audit
	}
	key, missing, err := ac.AuditKey(caddy.NewReplacer(), dataDir)
	if err != nil {
		return nil, err
	}
	if missing != "" || key == nil {
		return nil, fmt.Errorf("no audit key: pass --audit-key-file, set %s, or configure `audit { key_file … }` (the node keeps it in <data dir>/%s)", auditKeyEnv, auditKeyFileName)
	}
	return key, nil
}

// addAuditKeyFlag adds --audit-key-file, which auditKeyFromFlags reads.
func addAuditKeyFlag(c *cobra.Command) {
	c.Flags().String("audit-key-file", "", "File holding the audit key (default: from the configuration, $"+auditKeyEnv+" or <data dir>/"+auditKeyFileName+")")
}

// recordOffline appends e to the audit log of the store cfg names, for a
// command that works on the store directly (backup, restore) rather than
// through a node's operator API. The key is checked against the chain
// first, so a wrong key is refused rather than written.
func recordOffline(ctx context.Context, cfg open.Config, key []byte, e audit.Event) error {
	b, err := open.New(cfg)
	if err != nil {
		return err
	}
	defer b.Close()
	al, ok := b.(store.AuditLog)
	if !ok {
		return fmt.Errorf("the %s store keeps no audit log", cfg.Kind())
	}
	log, err := audit.New(audit.Config{Store: al, Key: key})
	if err != nil {
		return err
	}
	if err := log.CheckKey(ctx); err != nil {
		return fmt.Errorf("the audit key does not verify the audit log of %s: %w", cfg, err)
	}
	return log.Record(ctx, e)
}

// localActor names the operator of a command run on this machine (not
// through the operator API) in the audit log: "local:<user name>".
func localActor() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "local:" + u.Username
	}
	return "local"
}

// banCommand is `ban <did>` (add) or `unban <did|hash>`.
func banCommand(add bool) func(c *cli, cmd *cobra.Command, args []string) int {
	return func(c *cli, cmd *cobra.Command, args []string) int {
		what := "a DID"
		if !add {
			what = "a DID or a ban hash (h:…)"
		}
		if code, ok := usageArgs(c, 1, args, "one argument: "+what); !ok {
			return code
		}
		req := operator.BanRequest{DID: args[0]}
		if !add && strings.HasPrefix(args[0], redact.Prefix) {
			req = operator.BanRequest{Hash: args[0]}
		} else if err := ban.CheckDID(args[0]); err != nil {
			return c.fail(ExitUsage, fmt.Errorf("%q: %w", args[0], err))
		}
		oc, err := operatorClientFromFlags(cmd)
		if err != nil {
			return c.fail(ExitFailure, err)
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), operatorCallTimeout)
		defer cancel()
		path := "bans"
		verb, done := "ban", "banned"
		if !add {
			path, verb, done = "bans/remove", "unban", "unbanned"
		}
		dryRun, _ := cmd.Flags().GetBool("dry-run")
		yes, _ := cmd.Flags().GetBool("yes")
		probe := req
		probe.DryRun = true
		var plan operator.BanResult
		if err := oc.call(ctx, http.MethodPost, path, probe, &plan); err != nil {
			return c.fail(ExitFailure, err)
		}
		report := func(r operator.BanResult) {
			if c.json {
				c.event("summary", map[string]any{"action": verb, "hash": r.Hash, "changed": r.Changed, "dry_run": r.DryRun})
				return
			}
			switch {
			case r.DryRun && r.Changed:
				fmt.Fprintf(c.out, "dry run: would %s %s; nothing changed\n", verb, r.Hash)
			case r.DryRun:
				fmt.Fprintf(c.out, "dry run: %s is %s already; nothing would change\n", r.Hash, map[bool]string{true: "banned", false: "not banned"}[add])
			case r.Changed:
				fmt.Fprintf(c.out, "%s %s\n", done, r.Hash)
			default:
				fmt.Fprintf(c.out, "%s was %s already; nothing changed\n", r.Hash, map[bool]string{true: "banned", false: "not banned"}[add])
			}
		}
		if dryRun || !plan.Changed {
			report(plan)
			return ExitOK
		}
		if !yes {
			ok, err := c.confirm(fmt.Sprintf("%s %s (%s)?", strings.ToUpper(verb[:1])+verb[1:], args[0], plan.Hash))
			if err != nil || !ok {
				return c.fail(ExitFailure, err)
			}
		}
		var res operator.BanResult
		if err := oc.call(ctx, http.MethodPost, path, req, &res); err != nil {
			return c.fail(ExitFailure, err)
		}
		report(res)
		return ExitOK
	}
}

func banListCommand(c *cli, cmd *cobra.Command, args []string) int {
	if code, ok := usageArgs(c, 0, args, "no arguments"); !ok {
		return code
	}
	var list operator.BanList
	if code, ok := getOperator(c, cmd, "bans", &list); !ok {
		return code
	}
	for _, b := range list.Bans {
		if c.json {
			c.event("ban", map[string]any{"hash": b.Hash, "created_at": b.CreatedAt})
		} else {
			fmt.Fprintf(c.out, "%s  since %s\n", b.Hash, b.CreatedAt.Format(time.RFC3339))
		}
	}
	if c.json {
		c.event("summary", map[string]any{"bans": len(list.Bans)})
	} else if len(list.Bans) == 0 {
		fmt.Fprintln(c.out, "no bans")
	}
	return ExitOK
}

const healthcheckURLEnv = "CAIRN_HEALTHCHECK_URL"

func healthcheckCommand(c *cli, cmd *cobra.Command, args []string) int {
	if code, ok := usageArgs(c, 0, args, "no arguments"); !ok {
		return code
	}
	target, _ := cmd.Flags().GetString("url")
	if target == "" {
		target = os.Getenv(healthcheckURLEnv)
	}
	// The default: the public site, by its name, on this machine.
	viaLoopback := false
	if target == "" {
		port := os.Getenv("CAIRN_HTTPS_PORT")
		if port == "" {
			port = "443"
		}
		host := strings.TrimSpace(os.Getenv("CAIRN_DOMAIN"))
		if host == "" {
			host = "localhost"
		}
		target = "https://" + net.JoinHostPort(host, port) + "/xrpc/_health"
		viaLoopback = true
	}
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return c.fail(ExitUsage, fmt.Errorf("--url %q: want an http(s) URL", target))
	}
	timeout, _ := cmd.Flags().GetDuration("timeout")
	if timeout <= 0 {
		return c.fail(ExitUsage, fmt.Errorf("--timeout %s: want a positive duration", timeout))
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	if viaLoopback && !loopback(u.Hostname()) {
		// Send the name (SNI and Host) the site answers, to loopback.
		port := u.Port()
		dialer := &net.Dialer{Timeout: timeout}
		tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, net.JoinHostPort("localhost", port))
		}
	}
	if viaLoopback || loopback(u.Hostname()) {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} // this machine's own node; nothing secret is sent
	}
	client := &http.Client{Timeout: timeout, Transport: tr}
	resp, err := client.Get(u.String())
	if err != nil {
		var ue *url.Error
		if e, ok := err.(*url.Error); ok {
			ue = e
			err = ue.Err
		}
		return c.fail(ExitFailure, fmt.Errorf("%s: %v", u.Redacted(), err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return c.fail(ExitFailure, fmt.Errorf("%s answered %s", u.Redacted(), resp.Status))
	}
	if c.json {
		c.event("summary", map[string]any{"healthy": true, "url": u.Redacted()})
	} else {
		fmt.Fprintln(c.out, "ok")
	}
	return ExitOK
}

// loopback reports whether host names this machine.
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

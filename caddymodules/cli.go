package caddymodules

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// The operator commands' shared conventions (docs/operations.md,
// "Command-line conventions"): --json prints NDJSON events, one JSON object
// per line, each with a message_type ("status" for progress, "summary" for
// the result, "error" for a failure, and command-specific types such as
// "audit_event" or "ban"); text output goes to stdout, progress and errors
// to stderr; progress is a bar only when stderr is a terminal; an error is
// one line; destructive commands ask before acting unless --yes, and
// --dry-run shows what would happen.

// Exit codes of the operator commands.
const (
	// ExitOK: the command did what was asked.
	ExitOK = 0
	// ExitFailure: it could not (unreachable node or store, refused
	// request, not confirmed).
	ExitFailure = 1
	// ExitUsage: a wrong flag or argument.
	ExitUsage = 2
	// ExitTampered: `audit verify` found the audit chain broken.
	ExitTampered = 3
)

// cli is one operator command's output.
type cli struct {
	name   string // "cairn-caddy ban", for error lines
	json   bool
	out    io.Writer
	errOut io.Writer
	in     io.Reader
	// tty reports whether stderr is a terminal (progress bars) and
	// stdinTTY whether stdin is one (confirmation prompts).
	tty, stdinTTY bool
}

func newCLI(cmd *cobra.Command, name string) *cli {
	c := &cli{name: name, out: cmd.OutOrStdout(), errOut: cmd.ErrOrStderr(), in: cmd.InOrStdin()}
	if f, err := cmd.Flags().GetBool("json"); err == nil {
		c.json = f
	}
	if f, ok := c.errOut.(*os.File); ok {
		c.tty = term.IsTerminal(int(f.Fd()))
	}
	if f, ok := c.in.(*os.File); ok {
		c.stdinTTY = term.IsTerminal(int(f.Fd()))
	}
	return c
}

// event prints one NDJSON line with message_type typ and fields.
func (c *cli) event(typ string, fields map[string]any) {
	m := map[string]any{"message_type": typ}
	for k, v := range fields {
		m[k] = v
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		buf.Reset()
		buf.WriteString(`{"message_type":"error","error":"encoding output failed"}` + "\n")
	}
	_, _ = c.out.Write(buf.Bytes())
}

// fail reports err as one line (an "error" event under --json, on stdout
// with the other events; also on stderr) and returns code.
func (c *cli) fail(code int, err error) int {
	line := oneLine(err)
	if c.json {
		c.event("error", map[string]any{"error": line, "exit_code": code})
	}
	fmt.Fprintf(c.errOut, "%s: %s\n", c.name, line)
	return code
}

// progress returns a progress callback for a long operation of total
// units (-1 when unknown): a bar on a terminal, a plain line every few
// seconds otherwise, and NDJSON status events under --json. done ends it.
func (c *cli) progress(what string, total int64) (update func(n int64), done func()) {
	if c.json {
		last := time.Time{}
		return func(n int64) {
			if time.Since(last) >= 2*time.Second {
				last = time.Now()
				c.event("status", map[string]any{"action": what, "done": n, "total": total})
			}
		}, func() {}
	}
	if c.tty {
		bar := progressbar.NewOptions64(total, progressbar.OptionSetWriter(c.errOut), progressbar.OptionSetDescription(what),
			progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionClearOnFinish(),
			progressbar.OptionThrottle(100*time.Millisecond))
		return func(n int64) { _ = bar.Set64(n) }, func() { _ = bar.Finish() }
	}
	var last time.Time // the first line at once, then every 5 s
	return func(n int64) {
		if time.Since(last) >= 5*time.Second {
			last = time.Now()
			fmt.Fprintf(c.errOut, "%s: %d done\n", what, n)
		}
	}, func() {}
}

// confirm asks question on a terminal and reports a yes. Without a
// terminal (or under --json) it does not ask: the caller must have --yes.
func (c *cli) confirm(question string) (bool, error) {
	if c.json || !c.stdinTTY {
		return false, errors.New("not confirmed: pass --yes to go ahead without a prompt (or --dry-run to see what would change)")
	}
	fmt.Fprintf(c.errOut, "%s [y/N] ", question)
	line, err := bufio.NewReader(c.in).ReadString('\n')
	if err != nil && line == "" {
		return false, errors.New("not confirmed")
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true, nil
	}
	return false, errors.New("not confirmed")
}

// runCLI adapts an operator command to cobra: no usage text or Go error
// on failure, a one-line error from run itself, and run's exit code. Flag
// errors become one line and ExitUsage.
func runCLI(cmd *cobra.Command, name string, run func(c *cli, cmd *cobra.Command, args []string) int) {
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return exitWith(cmd, newCLI(cmd, name).fail(ExitUsage, fmt.Errorf("%w (see --help)", err)))
	})
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return exitWith(cmd, run(newCLI(cmd, name), cmd, args))
	}
}

// errSilent carries exit status 1: cobra prints nothing for it.
var errSilent = errors.New("failed")

// exitWith makes Caddy's main exit with code.
func exitWith(cmd *cobra.Command, code int) error {
	switch code {
	case ExitOK:
		return nil
	case ExitFailure:
		return errSilent
	}
	// Caddy's wrapper is the only way to an exit status above 1.
	return caddycmd.WrapCommandFuncForCobra(func(caddycmd.Flags) (int, error) { return code, nil })(cmd, nil)
}

// usageArgs checks the positional arguments, as a usage error.
func usageArgs(c *cli, n int, args []string, what string) (int, bool) {
	if len(args) != n {
		return c.fail(ExitUsage, fmt.Errorf("want %s (see --help)", what)), false
	}
	return 0, true
}

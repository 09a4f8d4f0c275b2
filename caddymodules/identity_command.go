package caddymodules

import (
	"context"
	"fmt"
	"net/http"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/cairn-chat/cairn-caddy/internal/operator"
	"github.com/cairn-chat/cairn-caddy/internal/servicekey"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "rotate-key",
		Short: "Rotates the service's did:web signing key, through the operator API",
		Long: `Adds a new signing key to the service's did:web document: it signs from
now on, and the previous key stays published (and verifies) for the grace
period (identity { grace }, 7 days by default), then it is dropped. The
rotation is written to the audit log (key.rotate). It asks for
confirmation unless --yes; --dry-run shows the keys and changes nothing.

    cairn-caddy rotate-key
    cairn-caddy rotate-key --dry-run --json
    cairn-caddy rotate-key list

Exit status: 0 ok, 1 failure or not confirmed, 2 usage.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Args = cobra.ArbitraryArgs
			addOperatorFlags(cmd)
			addConfirmFlags(cmd)
			runCLI(cmd, "cairn-caddy rotate-key", rotateKeyCommand)
			list := &cobra.Command{Use: "list [--json]", Short: "Lists the published signing keys", Args: cobra.ArbitraryArgs}
			addOperatorFlags(list)
			runCLI(list, "cairn-caddy rotate-key list", keyListCommand)
			cmd.AddCommand(list)
		},
	})
}

func printKey(c *cli, k servicekey.PublicKey) {
	if c.json {
		c.event("key", map[string]any{"key": k})
		return
	}
	state := "current, signs"
	if !k.Current {
		state = "retired, published until " + k.ExpiresAt.Format(time.RFC3339)
	}
	fmt.Fprintf(c.out, "%s  #%-22s %s  (%s)\n", k.ID, k.Fragment, k.Multibase, state)
}

func keyListCommand(c *cli, cmd *cobra.Command, args []string) int {
	if code, ok := usageArgs(c, 0, args, "no arguments"); !ok {
		return code
	}
	var id operator.Identity
	if code, ok := getOperator(c, cmd, "identity", &id); !ok {
		return code
	}
	for _, k := range id.Keys {
		printKey(c, k)
	}
	if c.json {
		c.event("summary", map[string]any{"keys": len(id.Keys), "grace_seconds": id.GraceSeconds})
	}
	return ExitOK
}

func rotateKeyCommand(c *cli, cmd *cobra.Command, args []string) int {
	if code, ok := usageArgs(c, 0, args, "no arguments (or list)"); !ok {
		return code
	}
	oc, err := operatorClientFromFlags(cmd)
	if err != nil {
		return c.fail(ExitFailure, err)
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), operatorCallTimeout)
	defer cancel()
	var plan operator.RotateResult
	if err := oc.call(ctx, http.MethodPost, "identity/rotate", operator.RotateRequest{DryRun: true}, &plan); err != nil {
		return c.fail(ExitFailure, err)
	}
	grace := time.Duration(plan.GraceSeconds) * time.Second
	if dry, _ := cmd.Flags().GetBool("dry-run"); dry {
		if c.json {
			c.event("summary", map[string]any{"dry_run": true, "current": plan.Current, "grace_seconds": plan.GraceSeconds})
		} else {
			fmt.Fprintf(c.out, "dry run: would add a new signing key and keep %s published for %s; nothing changed\n", plan.Current.ID, grace)
		}
		return ExitOK
	}
	if yes, _ := cmd.Flags().GetBool("yes"); !yes {
		ok, err := c.confirm(fmt.Sprintf("Rotate the service key %s (it stays published for %s)?", plan.Current.ID, grace))
		if err != nil || !ok {
			return c.fail(ExitFailure, err)
		}
	}
	var res operator.RotateResult
	if err := oc.call(ctx, http.MethodPost, "identity/rotate", operator.RotateRequest{}, &res); err != nil {
		return c.fail(ExitFailure, err)
	}
	if c.json {
		c.event("summary", map[string]any{"rotation": res.Rotation, "grace_seconds": res.GraceSeconds})
		return ExitOK
	}
	fmt.Fprintf(c.out, "rotated: %s signs from now on; %s stays published until %s\n", res.Rotation.New.ID,
		res.Rotation.Retired.ID, res.Rotation.Retired.ExpiresAt.Format(time.RFC3339))
	return ExitOK
}

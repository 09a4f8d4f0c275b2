package caddymodules

import (
	"fmt"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/cairn-chat/cairn-caddy/internal/operatorauth"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "operator-token",
		Short: "Generates a static operator token and the hash to configure",
		Long: `Generates a random operator token for cairn_operator_auth. The token is
printed once: give it to the operator. Configure only the hash:

    cairn_operator_auth {
        static_token_hash sha256:…
    }`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(func(caddycmd.Flags) (int, error) {
				token, hash, err := operatorauth.GenerateStaticToken()
				if err != nil {
					return 1, err
				}
				fmt.Printf("token: %s\nhash:  %s\n", token, hash)
				return 0, nil
			})
		},
	})
}

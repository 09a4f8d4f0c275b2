package caddymodules

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// Where the operator commands find the running node's operator API.
const (
	operatorURLEnv       = "CAIRN_OPERATOR_URL"
	operatorTokenEnv     = "CAIRN_OPERATOR_TOKEN"
	defaultOperatorURL   = "http://127.0.0.1:9180"
	operatorClientTimout = 30 * time.Second
)

// addOperatorFlags adds the flags of the commands that call the operator
// API. The token is never a flag (it would show in the process list).
func addOperatorFlags(c *cobra.Command) {
	c.Flags().String("operator-url", "", "Base URL of the node's internal site (default: $"+operatorURLEnv+", else "+defaultOperatorURL+")")
	c.Flags().String("token-file", "", "File holding the operator token (default: $"+operatorTokenEnv+")")
	c.Flags().Bool("json", false, "Print NDJSON events instead of text")
}

// operatorClient calls the operator API of a running node.
type operatorClient struct {
	base  string
	token string
	http  *http.Client
}

func operatorClientFromFlags(cmd *cobra.Command) (*operatorClient, error) {
	base, _ := cmd.Flags().GetString("operator-url")
	if base == "" {
		base = os.Getenv(operatorURLEnv)
	}
	if base == "" {
		base = defaultOperatorURL
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		return nil, fmt.Errorf("operator URL %q: want http(s)://host:port of the internal site", base)
	}
	token := os.Getenv(operatorTokenEnv)
	if file, _ := cmd.Flags().GetString("token-file"); file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("reading the operator token: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token == "" {
		return nil, fmt.Errorf("no operator token: set %s or pass --token-file (create one with `cairn-caddy operator-token`)", operatorTokenEnv)
	}
	return &operatorClient{base: strings.TrimRight(base, "/"), token: token, http: &http.Client{Timeout: operatorClientTimout}}, nil
}

// call sends a request to path (under /operator/v1/) with body as JSON
// (nil: none) and decodes a 200 response into out. A refusal becomes an
// error naming the XRPC error.
func (oc *operatorClient) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, oc.base+"/operator/v1/"+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+oc.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := oc.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("cannot reach the operator API at %s (%v): is cairn-caddy running, and is --operator-url ($%s) its internal site?", oc.base, err, operatorURLEnv)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("reading the operator API's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var xe xrpc.Body
		if json.Unmarshal(raw, &xe) != nil || xe.Error == "" {
			return fmt.Errorf("the operator API at %s answered %s: is --operator-url its internal site?", oc.base, resp.Status)
		}
		hint := ""
		switch xe.Error {
		case "AuthMissing", "InvalidToken", "ExpiredToken":
			hint = fmt.Sprintf(" (check %s or --token-file)", operatorTokenEnv)
		case "NotFound":
			hint = " (is this node's cairn-caddy older than this command?)"
		}
		return fmt.Errorf("refused: %s: %s%s", xe.Error, xe.Message, hint)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("the operator API's answer is not what this command expects: %w", err)
		}
	}
	return nil
}

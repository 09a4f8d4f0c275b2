package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// xcaddyTestPlugin is a third-party Caddy plugin from the Go module proxy,
// added to a copy of xcaddy.json to prove that the recipe's plugins list
// reaches the binary. caddy-l4 registers the `layer4` app.
const (
	xcaddyTestPlugin   = "github.com/mholt/caddy-l4@v0.1.2"
	xcaddyTestPluginID = "layer4"
)

// makeBuild runs `make build` in the repository root, as an operator
// does, with the extra make variables given. xcaddy builds in a module of
// its own, but through this machine's Go build cache, so a second build
// recompiles only what changed.
func makeBuild(t *testing.T, vars ...string) {
	t.Helper()
	testenv.Tool(t, "make")
	testenv.Tool(t, "git")
	cmd := exec.Command("make", append([]string{"--no-print-directory", "build"}, vars...)...)
	cmd.Dir = gatewaytest.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make build %v: %v\n%s", vars, err, out)
	}
}

// TestMakeBuildWithXcaddy builds the gateway the way README.md tells
// operators to, `make build` (xcaddy at the pinned version with this
// checkout as the cairn module), although the module is not published:
// xcaddy must not ask the Go module proxy for it. The binary lists every
// cairn module.
func TestMakeBuildWithXcaddy(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "cairn-caddy")
	makeBuild(t, "BINARY="+bin)
	assertListsCairnModules(t, listModules(t, bin))
}

// TestMakeBuildAddsRecipePlugin adds a third-party plugin to the plugins
// list of a copy of xcaddy.json and expects `make build` to put it in the
// binary, beside the cairn modules.
func TestMakeBuildAddsRecipePlugin(t *testing.T) {
	root := gatewaytest.RepoRoot()
	raw, err := os.ReadFile(filepath.Join(root, "xcaddy.json"))
	if err != nil {
		t.Fatal(err)
	}
	var recipe map[string]any
	if err := json.Unmarshal(raw, &recipe); err != nil {
		t.Fatalf("xcaddy.json: %v", err)
	}
	plugins, _ := recipe["plugins"].([]any)
	recipe["plugins"] = append(plugins, xcaddyTestPlugin)
	dir := t.TempDir()
	withPlugin := filepath.Join(dir, "xcaddy.json")
	out, err := json.MarshalIndent(recipe, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(withPlugin, out, 0o644); err != nil {
		t.Fatal(err)
	}

	bin := filepath.Join(dir, "cairn-caddy")
	makeBuild(t, "BINARY="+bin, "XCADDY_JSON="+withPlugin)
	listed := listModules(t, bin)
	if !listed[xcaddyTestPluginID] {
		t.Errorf("the plugin %s added to xcaddy.json is not in the binary (no %s module)", xcaddyTestPlugin, xcaddyTestPluginID)
	}
	assertListsCairnModules(t, listed)
}

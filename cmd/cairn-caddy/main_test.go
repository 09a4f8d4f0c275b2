package main

import (
	"encoding/json"
	"go/version"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"golang.org/x/mod/modfile"

	_ "github.com/cairn-chat/cairn-caddy/caddymodules"
	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
)

// TestXcaddyRecipeMatchesGoMod keeps the build recipe operators use
// (xcaddy.json, read by `make build`) on the Caddy version the code is built
// and tested with.
func TestXcaddyRecipeMatchesGoMod(t *testing.T) {
	root := gatewaytest.RepoRoot()
	raw, err := os.ReadFile(filepath.Join(root, "xcaddy.json"))
	if err != nil {
		t.Fatal(err)
	}
	var recipe struct {
		CaddyVersion  string   `json:"caddy_version"`
		XcaddyVersion string   `json:"xcaddy_version"`
		Module        string   `json:"module"`
		Plugins       []string `json:"plugins"`
	}
	if err := json.Unmarshal(raw, &recipe); err != nil {
		t.Fatalf("xcaddy.json: %v", err)
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	mf, err := modfile.Parse("go.mod", gomod, nil)
	if err != nil {
		t.Fatal(err)
	}
	if recipe.Module != mf.Module.Mod.Path {
		t.Errorf("xcaddy.json module %q, go.mod module %q", recipe.Module, mf.Module.Mod.Path)
	}
	var caddyVersion string
	for _, r := range mf.Require {
		if r.Mod.Path == "github.com/caddyserver/caddy/v2" {
			caddyVersion = r.Mod.Version
		}
	}
	if recipe.CaddyVersion != caddyVersion {
		t.Errorf("xcaddy.json builds Caddy %s but go.mod pins %s", recipe.CaddyVersion, caddyVersion)
	}
	if recipe.XcaddyVersion == "" {
		t.Error("xcaddy.json does not pin xcaddy_version")
	}
}

// TestBuiltWithPinnedToolchain fails when the suite runs on an older Go than
// go.mod's toolchain line, which is there because older standard libraries
// have vulnerabilities govulncheck reports as reachable. A Go whose go.env
// says GOTOOLCHAIN=local ignores that line; `make` and .ci/run export
// GOTOOLCHAIN from it.
func TestBuiltWithPinnedToolchain(t *testing.T) {
	gomod, err := os.ReadFile(filepath.Join(gatewaytest.RepoRoot(), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	mf, err := modfile.Parse("go.mod", gomod, nil)
	if err != nil {
		t.Fatal(err)
	}
	if mf.Toolchain == nil {
		t.Fatal("go.mod has no toolchain line")
	}
	want := mf.Toolchain.Name
	if got := runtime.Version(); version.Compare(got, want) < 0 {
		t.Fatalf("built with %s, older than go.mod's toolchain %s: run through make, or export GOTOOLCHAIN=%s", got, want, want)
	}
}

// TestListModulesShowsEveryCairnModule runs the built binary, as an operator
// would, and checks that every module this repository registers is listed.
func TestListModulesShowsEveryCairnModule(t *testing.T) {
	var b gatewaytest.Builder
	defer b.Cleanup()
	assertListsCairnModules(t, listModules(t, b.Binary(t)))
}

// listModules returns the module IDs `bin list-modules` prints.
func listModules(t *testing.T, bin string) map[string]bool {
	t.Helper()
	out, err := exec.Command(bin, "list-modules").CombinedOutput()
	if err != nil {
		t.Fatalf("list-modules: %v\n%s", err, out)
	}
	listed := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		listed[strings.TrimSpace(line)] = true
	}
	return listed
}

// assertListsCairnModules checks that listed holds every cairn module this
// test binary registers.
func assertListsCairnModules(t *testing.T, listed map[string]bool) {
	t.Helper()
	var ours []string
	for _, id := range caddy.Modules() {
		if mod, err := caddy.GetModule(id); err == nil && strings.HasPrefix(mod.ID.Name(), "cairn") || id == "cairn" {
			ours = append(ours, id)
		}
	}
	if len(ours) < 8 {
		t.Fatalf("only %d cairn modules registered: %v", len(ours), ours)
	}
	for _, id := range ours {
		if !listed[id] {
			t.Errorf("list-modules does not list %s", id)
		}
	}
}

package release

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
)

// TestEveryArtifactStatesTheLicense renders the deb's copyright file and
// every recipe with the project's licence (NOASSERTION today) and with a
// chosen one, and expects each to say it in its own vocabulary, so that
// changing License changes every artifact; the rpm's tag comes from
// nfpm.yaml's license field (TestRPMPackage reads it from the package).
func TestEveryArtifactStatesTheLicense(t *testing.T) {
	root := gatewaytest.RepoRoot()
	tarball := Artifact{Name: "cairn-caddy_1.0.0_linux_amd64.tar.gz", Dir: "cairn-caddy_1.0.0_linux_amd64",
		SHA256: strings.Repeat("ab", 32), Target: Target{OS: "linux", Arch: "amd64"}}
	mac := Artifact{Name: "cairn-caddy_1.0.0_darwin_arm64.tar.gz", Dir: "cairn-caddy_1.0.0_darwin_arm64",
		SHA256: strings.Repeat("cd", 32), Target: Target{OS: "darwin", Arch: "arm64"}}
	want := map[string]map[string]string{
		"NOASSERTION": {
			CopyrightTemplate:                        "\nLicense: NOASSERTION\n The project has not yet declared a license.",
			"packaging/homebrew/cairn-caddy.rb.tmpl": "\n  license :cannot_represent\n",
			"packaging/aur/PKGBUILD.tmpl":            "\nlicense=('NOASSERTION')\n",
			"packaging/nix/flake.nix.tmpl":           `license = { shortName = "NOASSERTION";`,
		},
		"Apache-2.0": {
			CopyrightTemplate:                        "\nLicense: Apache-2.0\n",
			"packaging/homebrew/cairn-caddy.rb.tmpl": "\n  license \"Apache-2.0\"\n",
			"packaging/aur/PKGBUILD.tmpl":            "\nlicense=('Apache-2.0')\n",
			"packaging/nix/flake.nix.tmpl":           `license = nixpkgs.lib.getLicenseFromSpdxId "Apache-2.0";`,
		},
	}
	if License != "NOASSERTION" {
		t.Logf("License is %s; the NOASSERTION case checks the templates' other branch", License)
	}
	templates := []string{CopyrightTemplate}
	for _, r := range Recipes {
		templates = append(templates, r.Template)
	}
	for license, byTemplate := range want {
		for _, tmpl := range templates {
			out, err := renderRecipe(filepath.Join(root, tmpl), RecipeData{Version: "1.0.0", URL: "https://example.test",
				Tarballs: []Artifact{tarball, mac}, License: license})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(out), byTemplate[tmpl]) {
				t.Errorf("%s with licence %s lacks %q:\n%s", tmpl, license, byTemplate[tmpl], out)
			}
			if license != "NOASSERTION" && strings.Contains(string(out), "NOASSERTION") {
				t.Errorf("%s with licence %s still says NOASSERTION:\n%s", tmpl, license, out)
			}
		}
	}
	nfpm, err := os.ReadFile(filepath.Join(root, "packaging/nfpm.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(nfpm), "\nlicense: "+License+"\n") {
		t.Errorf("packaging/nfpm.yaml's license is not %s (release.License); nfpm does not expand a variable there", License)
	}
}

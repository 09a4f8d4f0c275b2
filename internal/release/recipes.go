package release

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/template"
)

// Recipe is a package-manager recipe rendered from a template with the
// release's version, download addresses and checksums.
type Recipe struct {
	// Template is the template's path, relative to the repository.
	Template string
	// Output is the rendered file's name in the release directory.
	Output string
}

// Recipes are the recipes every release renders: a Homebrew formula, an
// Arch User Repository PKGBUILD and a Nix flake, all of which install the
// release tarballs.
var Recipes = []Recipe{
	{Template: "packaging/homebrew/cairn-caddy.rb.tmpl", Output: "cairn-caddy.rb"},
	{Template: "packaging/aur/PKGBUILD.tmpl", Output: "PKGBUILD"},
	{Template: "packaging/nix/flake.nix.tmpl", Output: "flake.nix"},
}

// Artifact is one file of a release, as a recipe refers to it.
type Artifact struct {
	// Name is the file name, relative to the release's download URL.
	Name string
	// Dir is a tarball's top directory.
	Dir string
	// SHA256 is the hex SHA-256 of the file.
	SHA256 string
	// Target is the platform a tarball or package was built for.
	Target Target
}

// URLFor returns the artifact's download address under base.
func (a Artifact) URLFor(base string) string {
	return strings.TrimSuffix(base, "/") + "/" + a.Name
}

// RecipeData is what a recipe template sees.
type RecipeData struct {
	// Version is the package version.
	Version string
	// URL is the base download address of this release's files.
	URL string
	// Tarballs are the release tarballs, in target order.
	Tarballs []Artifact
	// License is the SPDX licence expression (License).
	License string
}

// CopyrightTemplate is the template of the deb's copyright file, rendered
// like a recipe.
const CopyrightTemplate = "packaging/copyright.tmpl"

// renderRecipe renders one recipe template. Its functions: `tarball OS
// ARCH` (the tarball for that target, or nil when this release has none,
// so a recipe covers the targets built), `url A` (A's download address),
// `sri HEX` (a Nix SRI hash), `pkgver V` (V as pacman allows it).
func renderRecipe(templatePath string, data RecipeData) ([]byte, error) {
	funcs := template.FuncMap{
		"tarball": func(goos, goarch string) *Artifact {
			for i := range data.Tarballs {
				if t := data.Tarballs[i].Target; t.OS == goos && t.Arch == goarch {
					return &data.Tarballs[i]
				}
			}
			return nil
		},
		"url":    func(a *Artifact) string { return a.URLFor(data.URL) },
		"sri":    sri,
		"pkgver": func(v string) string { return strings.ReplaceAll(v, "~", "") },
	}
	raw, err := os.ReadFile(templatePath)
	if err != nil {
		return nil, err
	}
	tmpl, err := template.New(filepath.Base(templatePath)).Funcs(funcs).Option("missingkey=error").Parse(string(raw))
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", templatePath, err)
	}
	var out bytes.Buffer
	if err := tmpl.Execute(&out, data); err != nil {
		return nil, fmt.Errorf("rendering %s: %w", templatePath, err)
	}
	return out.Bytes(), nil
}

// sri turns a hex SHA-256 into the Subresource Integrity form Nix's
// fetchurl takes (sha256-<base64>).
func sri(hexSum string) (string, error) {
	b, err := hex.DecodeString(hexSum)
	if err != nil || len(b) != 32 {
		return "", fmt.Errorf("not a SHA-256: %q", hexSum)
	}
	return "sha256-" + base64.StdEncoding.EncodeToString(b), nil
}

// Package version is the binary's release identity: its version (stamped
// at build time with -ldflags "-X
// github.com/cairn-chat/cairn-caddy/internal/version.stamped=vX.Y.Z"),
// the release notes it embeds, and version comparison, for status and
// for upgrade-binary and rollback.
package version

import (
	_ "embed"
	"runtime/debug"
	"strings"

	"golang.org/x/mod/semver"
)

// stamped is set by the build (-ldflags -X); empty in a development
// build. It is the package's only variable, as -X needs one.
var stamped string

//go:embed CHANGELOG.md
var changelog string

// Version returns the binary's version: the stamped release version, else
// the module version, else "devel-<revision>" for a development build.
func Version() string {
	if stamped != "" {
		return stamped
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "devel-" + s.Value[:12]
		}
	}
	return "devel"
}

// Valid reports whether v is a release version (semantic, "v1.2.3").
func Valid(v string) bool { return semver.IsValid(v) }

// Newer reports whether v is a newer release than than.
func Newer(v, than string) bool { return semver.Compare(v, than) > 0 }

// Notes returns the sections of the embedded release notes for the
// versions after since, up to and including this binary's (all of them
// when since is empty), newest first. A section whose heading is not a
// version ("unreleased") is shown when the binary's version is newer than
// since.
func Notes(since string) string {
	var out []string
	sections := strings.Split(changelog, "\n## ")
	for _, sec := range sections[1:] {
		heading, _, _ := strings.Cut(sec, "\n")
		v, _, _ := strings.Cut(heading, " ")
		switch {
		case since == "":
		case Valid(v) && !Newer(v, since):
			continue
		case Valid(v) && Valid(Version()) && Newer(v, Version()):
			continue
		}
		out = append(out, "## "+strings.TrimRight(sec, "\n"))
	}
	return strings.Join(out, "\n\n")
}

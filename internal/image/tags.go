package image

import (
	"fmt"
	"regexp"
	"strings"
)

// semverTag is a release tag: v1.2.3, optionally with a pre-release
// (v1.2.3-rc.1). Build metadata (+…) is not allowed in image tags.
var semverTag = regexp.MustCompile(`^v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$`)

// describeSuffix is what `git describe` adds after the last tag for a later
// commit (v1.2.3-4-gabcdef0) or a modified tree (-dirty): such a build is
// not the release.
var describeSuffix = regexp.MustCompile(`(-[0-9]+-g[0-9a-f]{4,}(-dirty)?|-dirty)$`)

// Tags returns the tags an image built at version gets:
//
//   - a release (v1.2.3): 1.2.3, 1.2, 1 and latest, so that operators can
//     follow a minor or major line, or the newest release;
//   - a pre-release (v1.2.3-rc.1): that exact version only, never latest;
//   - anything else (a commit after a tag as `git describe` names it,
//     v1.2.3-4-gabcdef0, a modified tree, an untagged commit): the branch
//     name, so `main` always names the newest build of main.
//
// The branch is only used for non-release builds and must be a valid tag.
func Tags(version, branch string) ([]string, error) {
	if m := semverTag.FindStringSubmatch(version); m != nil && isRelease(version) {
		v := strings.TrimPrefix(version, "v")
		if m[4] != "" {
			return []string{v}, nil
		}
		return []string{v, m[1] + "." + m[2], m[1], "latest"}, nil
	}
	if !validTag(branch) {
		return nil, fmt.Errorf("version %q is not a release (vX.Y.Z) and branch %q is not a valid image tag", version, branch)
	}
	return []string{branch}, nil
}

// isRelease reports whether version names a release or pre-release
// (v1.2.3, v1.2.3-rc.1) rather than a build after or beside one.
func isRelease(version string) bool {
	return semverTag.MatchString(version) && !describeSuffix.MatchString(version)
}

// validTag is the distribution spec's tag grammar.
func validTag(t string) bool { return tagGrammar.MatchString(t) }

var tagGrammar = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

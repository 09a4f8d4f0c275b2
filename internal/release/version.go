package release

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// tagVersion matches a release tag: v1.2.3, optionally with a pre-release
// (v1.2.3-rc.1).
var tagVersion = regexp.MustCompile(`^v([0-9]+\.[0-9]+\.[0-9]+)(?:-([0-9A-Za-z.]+))?$`)

// VersionFromTag turns a release tag into the version packages carry:
// v1.2.3 is 1.2.3, and a pre-release v1.2.3-rc.1 is 1.2.3~rc.1, which dpkg
// and rpm both sort before 1.2.3 (a hyphen would be the package revision
// to dpkg and is not allowed in an rpm version).
func VersionFromTag(tag string) (string, error) {
	m := tagVersion.FindStringSubmatch(tag)
	if m == nil {
		return "", fmt.Errorf("tag %q is not a release tag (vMAJOR.MINOR.PATCH[-PRERELEASE])", tag)
	}
	if m[2] == "" {
		return m[1], nil
	}
	return m[1] + "~" + m[2], nil
}

// DevVersion is the version of a build from an untagged commit:
// 0.0.0~git<commit time>.g<short commit>, which sorts below every release
// and by commit time among development builds.
func DevVersion(commitTime time.Time, commit string) string {
	if len(commit) > 12 {
		commit = commit[:12]
	}
	// The g, as in `git describe`, keeps the commit a semantic-version
	// identifier when its hex prefix is all digits with a leading zero
	// (012345678901), which semver forbids.
	return "0.0.0~git" + commitTime.UTC().Format("20060102150405") + ".g" + commit
}

// validVersion is what a package version may hold (dpkg's and rpm's
// common ground, without a hyphen).
var validVersion = regexp.MustCompile(`^[0-9][0-9A-Za-z.~+]*$`)

// CheckVersion refuses a version a deb or rpm cannot carry, or one that
// would end up in a file name with a path separator.
func CheckVersion(v string) error {
	if !validVersion.MatchString(v) {
		return fmt.Errorf("version %q: use digits, letters, '.', '~' and '+', starting with a digit (1.2.3, 1.2.3~rc.1)", v)
	}
	return nil
}

// Source describes the commit a release is built from.
type Source struct {
	// Version is the package version (see VersionFromTag, DevVersion).
	Version string
	// Commit is the full commit hash, empty outside a git checkout.
	Commit string
	// Time is the commit time, the SOURCE_DATE_EPOCH of the build.
	Time time.Time
}

// GitSource reads the checked-out commit of the repository at dir: its
// time, and its version from a release tag pointing at it or else
// DevVersion.
func GitSource(ctx context.Context, dir string) (Source, error) {
	out, err := git(ctx, dir, "log", "-1", "--format=%H %ct")
	if err != nil {
		return Source{}, err
	}
	commit, ct, _ := strings.Cut(out, " ")
	secs, err := strconv.ParseInt(ct, 10, 64)
	if err != nil {
		return Source{}, fmt.Errorf("reading the commit time: %q", out)
	}
	src := Source{Commit: commit, Time: time.Unix(secs, 0).UTC()}
	if tag, err := git(ctx, dir, "describe", "--tags", "--exact-match", "--match", "v[0-9]*"); err == nil {
		if src.Version, err = VersionFromTag(tag); err != nil {
			return Source{}, err
		}
		return src, nil
	}
	src.Version = DevVersion(src.Time, commit)
	return src, nil
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("git %s: %s", strings.Join(args, " "), strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

package image

import (
	"strings"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/release"
	"github.com/cairn-chat/cairn-caddy/internal/version"
)

// TestPackageVersion: the image's binary is stamped with the version `make
// release` gives the same commit: the release for a release label, the
// commit's development version for anything else.
func TestPackageVersion(t *testing.T) {
	at := time.Date(2026, 11, 30, 8, 44, 31, 0, time.UTC)
	const rev = "b0cd4e4327abc90d697da5d3da694979fd3a80db"
	dev := release.DevVersion(at, rev)
	for _, c := range []struct{ label, want string }{
		{"v1.2.3", "1.2.3"},
		{"1.2.3", "1.2.3"},
		{"v1.2.3-rc.1", "1.2.3~rc.1"},
		{"v1.2.3-4-gabcdef0", dev},
		{"v1.2.3-dirty", dev},
		{"v1.2.3-rc-1", dev}, // a tag make release refuses as a release
		{"b0cd4e4", dev},
		{"dev", dev},
	} {
		m := Metadata{Version: c.label, Revision: rev, Created: at}
		got := m.PackageVersion()
		if got != c.want {
			t.Errorf("label %q: package version %q, want %q", c.label, got, c.want)
		}
		if !version.Valid(release.SemVer(got)) {
			t.Errorf("label %q: stamp %q is not a release version upgrade-binary accepts", c.label, release.SemVer(got))
		}
		if want := StripFlags + " " + release.VersionLDFlags(got); LDFlags(m) != want {
			t.Errorf("label %q: LDFlags %q, want %q", c.label, LDFlags(m), want)
		}
	}
}

// FuzzPackageVersion: whatever the label and revision, the stamp either
// is refused by Validate or is a package version dpkg and rpm accept whose
// semantic version upgrade-binary accepts, and the linker flags stay four
// -X words after the strip flags.
func FuzzPackageVersion(f *testing.F) {
	f.Add("v1.2.3", "b0cd4e4327abc90d697da5d3da694979fd3a80db", int64(1764492271))
	f.Add("v1.2.3-4-gabcdef0", "unknown", int64(0))
	f.Add("dev", "a b", int64(-1))
	f.Fuzz(func(t *testing.T, label, rev string, secs int64) {
		m := Metadata{Version: label, Revision: rev, Created: time.Unix(secs, 0).UTC(),
			Source: "https://example.com", Licenses: DefaultLicenses}
		if m.Validate() != nil {
			return
		}
		pv := m.PackageVersion()
		if err := release.CheckVersion(pv); err != nil {
			t.Fatalf("Validate accepted %+v, whose package version %q is refused: %v", m, pv, err)
		}
		if !version.Valid(release.SemVer(pv)) {
			t.Fatalf("label %q revision %q: stamp %q is not a valid release version", label, rev, release.SemVer(pv))
		}
		if n := len(strings.Fields(LDFlags(m))); n != 6 {
			t.Fatalf("label %q revision %q: LDFlags %q has %d words, want 6", label, rev, LDFlags(m), n)
		}
	})
}

package image

import (
	"reflect"
	"regexp"
	"testing"
)

func TestTags(t *testing.T) {
	for _, c := range []struct {
		version, branch string
		want            []string
	}{
		{"v1.2.3", "main", []string{"1.2.3", "1.2", "1", "latest"}},
		{"1.0.0", "main", []string{"1.0.0", "1.0", "1", "latest"}},
		{"v1.2.3-rc.1", "main", []string{"1.2.3-rc.1"}},
		{"v1.2.3-4-gabcdef0", "main", []string{"main"}},
		{"v1.2.3-dirty", "main", []string{"main"}},
		{"v1.2.3-rc.1-4-gabcdef0-dirty", "main", []string{"main"}},
		{"abcdef0", "main", []string{"main"}},
		{"dev", "main", []string{"main"}},
	} {
		got, err := Tags(c.version, c.branch)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("Tags(%q, %q) = %v, %v; want %v", c.version, c.branch, got, err, c.want)
		}
	}
	for _, bad := range []string{"feature/x", "", "-x"} {
		if got, err := Tags("abcdef0", bad); err == nil {
			t.Errorf("Tags with branch %q = %v, want an error", bad, got)
		}
	}
}

// FuzzTags: whatever the version and branch, every tag returned is a
// valid image tag, and a stable release is the only thing tagged latest.
func FuzzTags(f *testing.F) {
	f.Add("v1.2.3", "main")
	f.Add("v1.2.3-rc.1", "main")
	f.Add("g1234", "feature-x")
	tag := regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	f.Fuzz(func(t *testing.T, version, branch string) {
		tags, err := Tags(version, branch)
		if err != nil {
			return
		}
		for _, tg := range tags {
			if !tag.MatchString(tg) {
				t.Fatalf("Tags(%q, %q) gave the invalid tag %q", version, branch, tg)
			}
			if tg == "latest" && !semverTag.MatchString(version) {
				t.Fatalf("Tags(%q, %q) tagged a non-release latest", version, branch)
			}
		}
	})
}

package version

import (
	"strings"
	"testing"
)

func TestNotes(t *testing.T) {
	all := Notes("")
	if !strings.Contains(all, "## v0.10.0") || !strings.Contains(all, "## v0.11.0") {
		t.Fatalf("all notes:\n%s", all)
	}
	since := Notes("v0.10.0")
	if strings.Contains(since, "## v0.10.0") || !strings.Contains(since, "## v0.11.0") {
		t.Fatalf("notes since v0.10.0:\n%s", since)
	}
	if !Newer("v1.1.0", "v1.0.0") || Newer("v1.0.0", "v1.0.0") || Valid("devel-abc") {
		t.Fatal("version comparison")
	}
}

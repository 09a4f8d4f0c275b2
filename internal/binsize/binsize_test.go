package binsize

import (
	"strings"
	"testing"
)

const nmSample = `  4bcf3c0   33554432 B crypto/internal/fips140/drbg.memory
  3db7268    4056136 r go:func.*
  1b95380      18597 T github.com/redis/go-redis/v9.ExtractCommandValue
  1c11f80        100 T github.com/redis/go-redis/v9.cmdable.FTCreate
  4a54b00       8064 D crypto/internal/fips140/nistec.p256PrecomputedEmbed
  49d2638        200 d gitlab.com/yawning/secp256k1-voi..gobytes.1
  1a00000         50 T sync/atomic.(*Pointer[go.shape.struct { net/http.a int }]).Load
  1a00100         30 R type:*net/http.Server
  1a00200         20 R type:.eq.[2]string
                   0 U _cgo_init
`

// TestParseSumsFileBytesByPackage: sizes are summed per import path,
// BSS (B, b) and undefined symbols count for nothing, and generic
// instantiations and type descriptors go to the package that owns them.
func TestParseSumsFileBytesByPackage(t *testing.T) {
	rep, err := Parse(strings.NewReader(nmSample))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, p := range rep.Packages {
		got[p.Path] = p.Bytes
	}
	want := map[string]int64{
		"(go:func)":                        4056136,
		"github.com/redis/go-redis/v9":     18697,
		"crypto/internal/fips140/nistec":   8064,
		"gitlab.com/yawning/secp256k1-voi": 200,
		"sync/atomic":                      50,
		"net/http":                         30,
		"(type metadata)":                  20,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %d bytes, want %d", k, got[k], v)
		}
	}
	if _, ok := got["crypto/internal/fips140/drbg"]; ok {
		t.Error("a BSS symbol was counted: it takes no bytes in the file")
	}
	var total int64
	for _, v := range want {
		total += v
	}
	if rep.Total != total {
		t.Errorf("total %d, want %d", rep.Total, total)
	}
	if rep.Packages[0].Path != "(go:func)" {
		t.Errorf("largest first: got %s first", rep.Packages[0].Path)
	}
	mods := map[string]int64{}
	for _, m := range rep.Modules() {
		mods[m.Path] = m.Bytes
	}
	if mods["github.com/redis/go-redis/v9"] != 18697 || mods["crypto"] != 8064 {
		t.Errorf("modules %v", mods)
	}
}

func TestParseRejectsWhatIsNotNmOutput(t *testing.T) {
	for _, in := range []string{"hello\n", "4bcf3c0 many B x\n"} {
		if _, err := Parse(strings.NewReader(in)); err == nil {
			t.Errorf("Parse(%q) accepted it", in)
		}
	}
}

// FuzzParse: any input gives a report or an error, never a panic, and the
// packages add up to the total.
func FuzzParse(f *testing.F) {
	f.Add(nmSample)
	f.Add("  1 2 T a.b\n")
	f.Add("x 1 T type:\n")
	f.Fuzz(func(t *testing.T, in string) {
		rep, err := Parse(strings.NewReader(in))
		if err != nil {
			return
		}
		var sum int64
		for _, p := range rep.Packages {
			sum += p.Bytes
		}
		if sum != rep.Total {
			t.Fatalf("packages add up to %d, total %d", sum, rep.Total)
		}
	})
}

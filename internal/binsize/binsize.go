// Package binsize attributes a Go binary's size to the packages it was built
// from, by reading the symbol table `go tool nm -size` prints. It answers
// "what makes the binary big" for docs/benchmarks.md and the choice of which
// Caddy modules cairn-caddy leaves out.
//
// The symbol table only exists in a binary built without -s; the sizes are
// those of the code and data each package's symbols occupy, which add up to
// most, not all, of a stripped binary (pclntab, runtime type data and the
// section alignment are counted under their own pseudo-packages).
package binsize

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// Package is the size attributed to one import path (or pseudo-package).
type Package struct {
	Path  string `json:"path"`
	Bytes int64  `json:"bytes"`
}

// Module groups packages under a module-like prefix: the first three path
// elements of a host-named path (github.com/owner/repo), the first element
// otherwise (the standard library's "net", "crypto", …).
type Module struct {
	Path  string `json:"path"`
	Bytes int64  `json:"bytes"`
}

// Report is a binary's size by package, largest first.
type Report struct {
	Total    int64     `json:"total"`
	Packages []Package `json:"packages"`
}

// Parse reads `go tool nm -size` output (address, size, type, name per
// line) and sums the sizes per package. Lines it cannot read are an error:
// the caller gave it something other than nm's output.
func Parse(r io.Reader) (Report, error) {
	sums := map[string]int64{}
	var total int64
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		// "  4a3b20     120 T net/http.(*Server).Serve": the name may hold
		// spaces (generic instantiations), so split off three fields only.
		fields := strings.SplitN(strings.Join(strings.Fields(text), " "), " ", 4)
		if len(fields) < 3 {
			return Report{}, fmt.Errorf("nm output line %d: want address, size, type and name: %q", line, text)
		}
		// An undefined symbol has no address: "size U name".
		if len(fields) == 3 && fields[1] == "U" {
			continue
		}
		size, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil {
			return Report{}, fmt.Errorf("nm output line %d: size %q: %w", line, fields[1], err)
		}
		// B and b are BSS: zeroed memory at run time, no bytes in the
		// file. U is undefined here.
		if len(fields) < 4 || fields[2] == "B" || fields[2] == "b" || fields[2] == "U" {
			continue
		}
		sums[PackageOf(fields[3])] += size
		total += size
	}
	if err := sc.Err(); err != nil {
		return Report{}, fmt.Errorf("reading nm output: %w", err)
	}
	rep := Report{Total: total}
	for p, b := range sums {
		rep.Packages = append(rep.Packages, Package{Path: p, Bytes: b})
	}
	sort.Slice(rep.Packages, func(i, j int) bool {
		if rep.Packages[i].Bytes != rep.Packages[j].Bytes {
			return rep.Packages[i].Bytes > rep.Packages[j].Bytes
		}
		return rep.Packages[i].Path < rep.Packages[j].Path
	})
	return rep, nil
}

// PackageOf returns the import path a symbol name belongs to: the name up
// to the first dot after its last slash, so "net/http.(*Server).Serve" is
// net/http and "gopkg.in/yaml.v3.Marshal" is gopkg.in/yaml (close enough
// for a size report). Type descriptors count for the type's package; names
// without a package (runtime tables, "go:buildinfo") are grouped in
// parentheses.
func PackageOf(name string) string {
	switch {
	case strings.HasPrefix(name, "type:"):
		// type:*net/http.Server, type:.eq.[2]string: the type's package.
		rest := strings.TrimLeft(strings.TrimPrefix(name, "type:"), "*[]0123456789.")
		if rest == "" || strings.HasPrefix(rest, "eq") || strings.HasPrefix(rest, "hash") {
			return "(type metadata)"
		}
		return PackageOf(rest)
	case strings.HasPrefix(name, "go:"):
		return "(go:" + strings.SplitN(strings.TrimPrefix(name, "go:"), ".", 2)[0] + ")"
	}
	// A generic instantiation's brackets name other packages; cut them off
	// before looking for the package boundary.
	base := name
	if i := strings.IndexByte(base, '['); i >= 0 {
		base = base[:i]
	}
	slash := strings.LastIndexByte(base, '/')
	dot := strings.IndexByte(base[slash+1:], '.')
	if dot < 0 {
		if slash < 0 {
			return "(" + base + ")"
		}
		return base
	}
	return base[:slash+1+dot]
}

// Modules sums a report's packages by module-like prefix (see Module).
func (r Report) Modules() []Module {
	sums := map[string]int64{}
	for _, p := range r.Packages {
		sums[moduleOf(p.Path)] += p.Bytes
	}
	var out []Module
	for m, b := range sums {
		out = append(out, Module{Path: m, Bytes: b})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Bytes != out[j].Bytes {
			return out[i].Bytes > out[j].Bytes
		}
		return out[i].Path < out[j].Path
	})
	return out
}

// moduleOf returns the first three elements of a host-named path, with a
// following major-version element (github.com/caddyserver/caddy/v2), or
// the first element of a standard-library path.
func moduleOf(pkg string) string {
	parts := strings.Split(pkg, "/")
	if !strings.Contains(parts[0], ".") {
		return parts[0]
	}
	n := min(3, len(parts))
	if len(parts) > 3 && len(parts[3]) > 1 && parts[3][0] == 'v' && strings.Trim(parts[3][1:], "0123456789") == "" {
		n = 4
	}
	return strings.Join(parts[:n], "/")
}

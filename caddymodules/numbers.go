package caddymodules

import (
	"errors"
	"math/big"
	"strconv"
	"strings"
	"unicode"

	"github.com/dustin/go-humanize"
)

// errNotCount is what positiveInt reports for anything but a plain count.
var errNotCount = errors.New("want a positive whole number, written in digits only")

// positiveInt parses a count from a Caddyfile option strictly: decimal
// digits only, at least 1 and at most the largest int. It rejects what
// fmt.Sscanf("%d") would accept in part ("3.5" as 3, "12abc" as 12), signs,
// spaces, underscores and values that overflow.
func positiveInt(s string) (int, error) {
	n, err := strconv.ParseUint(s, 10, strconv.IntSize-1)
	if err != nil || n == 0 {
		return 0, errNotCount
	}
	return int(n), nil
}

// errNotSize is what byteSize reports for anything but a whole number of
// bytes.
var errNotSize = errors.New("want a whole number of bytes, such as 10MiB, 512KB or 1048576")

// byteSize parses a size from a Caddyfile option: a decimal number and an
// optional unit (KB, KiB, MB, MiB, …, as go-humanize reads them), which
// together must make a positive, whole number of bytes. It rejects what
// humanize.ParseBytes alone would truncate ("3.5" as 3 bytes,
// "1.0001KiB"), signs, and overflow.
func byteSize(s string) (uint64, error) {
	n, err := humanize.ParseBytes(s)
	if err != nil || n == 0 {
		return 0, errNotSize
	}
	num := strings.TrimRightFunc(s, func(r rune) bool { return !unicode.IsDigit(r) && r != '.' })
	unit := strings.TrimSpace(s[len(num):])
	perUnit, err := humanize.ParseBytes("1" + unit)
	if err != nil || strings.HasPrefix(num, ".") || strings.HasSuffix(num, ".") {
		return 0, errNotSize
	}
	exact, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, errNotSize
	}
	exact.Mul(exact, new(big.Rat).SetInt(new(big.Int).SetUint64(perUnit)))
	if !exact.IsInt() || !exact.Num().IsUint64() || exact.Num().Uint64() != n {
		return 0, errNotSize
	}
	return n, nil
}

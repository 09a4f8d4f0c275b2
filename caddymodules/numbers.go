package caddymodules

import (
	"errors"
	"strconv"
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

package blocks

import (
	"context"
	"errors"
)

// Reader reads block relations: Source (from each account's PDS), AppView
// and Combined implement it.
type Reader interface {
	// Among returns the blocks between accounts of dids, either way, each
	// once; ErrUnavailable if they could not be read.
	Among(ctx context.Context, dids []string) ([]Relation, error)
	// Verify reads, bypassing any cache, whether blocker blocks blocked
	// (through the record uri when given).
	Verify(ctx context.Context, blocker, blocked, uri string) (Relation, bool, error)
}

// Combined reads blocks from two sources, for an operator who wants the
// blocks either knows of. Among asks both at once and answers every block
// either finds (once per direction, Primary's copy first, which carries
// the record's date); it fails if either fails, so a source that is down
// refuses adds as one source would. Verify asks Primary only: with the PDS
// as Primary, a block the client has just made verifies at once, without
// waiting for an AppView to index it.
type Combined struct {
	Primary, Secondary Reader
}

// Among implements Reader.
func (c Combined) Among(ctx context.Context, dids []string) ([]Relation, error) {
	var second []Relation
	var secondErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		second, secondErr = c.Secondary.Among(ctx, dids)
	}()
	first, firstErr := c.Primary.Among(ctx, dids)
	<-done
	if err := errors.Join(firstErr, secondErr); err != nil {
		return nil, err
	}
	seen := map[[2]string]bool{}
	var out []Relation
	for _, r := range append(first, second...) {
		if k := [2]string{r.Blocker, r.Blocked}; !seen[k] {
			seen[k] = true
			out = append(out, r)
		}
	}
	return out, nil
}

// Verify implements Reader.
func (c Combined) Verify(ctx context.Context, blocker, blocked, uri string) (Relation, bool, error) {
	return c.Primary.Verify(ctx, blocker, blocked, uri)
}

// Interface guards
var (
	_ Reader = (*Source)(nil)
	_ Reader = (*AppView)(nil)
	_ Reader = Combined{}
)

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
	// Between returns the blocks, either way, between an account of added
	// and an account of added or existing, each once; ErrUnavailable if
	// they could not be read. An add needs no more than this.
	Between(ctx context.Context, added, existing []string) ([]Relation, error)
	// Verify reads, bypassing any cache, whether blocker blocks blocked
	// (through the record uri when given).
	Verify(ctx context.Context, blocker, blocked, uri string) (Relation, bool, error)
}

// Combined reads blocks from two sources, for an operator who wants the
// blocks either knows of. Among asks both at once and answers every block
// either finds (once per direction, Primary's copy first, which carries
// the record's date); it fails if either fails, so a source that is down
// refuses adds as one source would. Between does the same with each
// source's Between. Verify asks Primary only: with the PDS
// as Primary, a block the client has just made verifies at once, without
// waiting for an AppView to index it.
type Combined struct {
	Primary, Secondary Reader
}

// Among implements Reader.
func (c Combined) Among(ctx context.Context, dids []string) ([]Relation, error) {
	return both(func(r Reader) ([]Relation, error) { return r.Among(ctx, dids) }, c.Primary, c.Secondary)
}

// Between implements Reader, as Among does.
func (c Combined) Between(ctx context.Context, added, existing []string) ([]Relation, error) {
	return both(func(r Reader) ([]Relation, error) { return r.Between(ctx, added, existing) }, c.Primary, c.Secondary)
}

// both reads from primary and secondary at once and unites what they find,
// primary's copy of a block first; it fails if either fails.
func both(read func(Reader) ([]Relation, error), primary, secondary Reader) ([]Relation, error) {
	var second []Relation
	var secondErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		second, secondErr = read(secondary)
	}()
	first, firstErr := read(primary)
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

package blocks

import (
	"context"
	"errors"
	"fmt"

	"github.com/cairn-chat/cairn-caddy/internal/atpauth"
)

// ResolverLocator finds PDSes through atpauth's DID resolver (its cache,
// singleflight and address guard), mapping the resolver's permanent
// failures to ErrNoPDS.
type ResolverLocator struct{ *atpauth.Resolver }

// PDSEndpoint implements Locator.
func (l ResolverLocator) PDSEndpoint(ctx context.Context, did string) (string, error) {
	u, err := l.Resolver.PDSEndpoint(ctx, did)
	if err == nil {
		return u, nil
	}
	if errors.Is(err, atpauth.ErrDIDUnavailable) {
		return "", err
	}
	return "", fmt.Errorf("%w: %w", ErrNoPDS, err)
}

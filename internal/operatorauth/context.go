package operatorauth

import "context"

type contextKey struct{}

// NewContext returns a copy of ctx carrying the authenticated operator.
// Only cairn_operator_auth calls it, after a Verifier accepted the
// request.
func NewContext(ctx context.Context, op *Operator) context.Context {
	return context.WithValue(ctx, contextKey{}, op)
}

// FromContext returns the operator NewContext put into ctx, if any.
func FromContext(ctx context.Context) (*Operator, bool) {
	op, ok := ctx.Value(contextKey{}).(*Operator)
	return op, ok && op != nil
}

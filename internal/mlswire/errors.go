package mlswire

import "errors"

// Sentinel errors returned (wrapped with context) by this package. Callers
// branch on them with errors.Is.
var (
	// ErrTruncated means the input ended before the structure did.
	ErrTruncated = errors.New("mlswire: truncated input")
	// ErrTrailingData means bytes remained after a complete structure.
	ErrTrailingData = errors.New("mlswire: trailing data")
	// ErrInvalidVarint means a variable-length integer used the reserved
	// 0b11 prefix or was not encoded in the minimum number of bytes.
	ErrInvalidVarint = errors.New("mlswire: invalid variable-length integer")
	// ErrMalformed means a value that selects the structure (an optional
	// flag, a sender or content type, ...) is outside the values RFC 9420
	// defines for it, or a value cannot be encoded.
	ErrMalformed = errors.New("mlswire: malformed structure")
	// ErrUnsupported means the input uses an extensible value this package
	// cannot parse past: an unknown protocol version, wire format, proposal
	// type or credential type.
	ErrUnsupported = errors.New("mlswire: unsupported value")
	// ErrUnsupportedCipherSuite means an operation needs the cryptography of
	// a cipher suite this package does not implement.
	ErrUnsupportedCipherSuite = errors.New("mlswire: unsupported cipher suite")
	// ErrTooLarge means the input exceeds MaxMessageSize or decodes into
	// more than MaxElements vector elements.
	ErrTooLarge = errors.New("mlswire: input too large")
	// ErrWrongWireFormat means a message parsed but carries a different
	// wire format than the caller asked for.
	ErrWrongWireFormat = errors.New("mlswire: unexpected wire format")
	// ErrAmbiguous means the bytes parse both as an MLSMessage-wrapped
	// KeyPackage and as a bare KeyPackage, with different meanings.
	ErrAmbiguous = errors.New("mlswire: ambiguous encoding")
	// ErrInvalid means a structure parses but violates a rule of RFC 9420
	// that the caller asked this package to check.
	ErrInvalid = errors.New("mlswire: invalid structure")
	// ErrBadSignature means a signature did not verify.
	ErrBadSignature = errors.New("mlswire: bad signature")
)

// Package mlswire parses and re-encodes the wire format of the Messaging
// Layer Security protocol (MLS, RFC 9420), written in the TLS presentation
// language with the variable-length vector headers of RFC 9420 §2.1.2.
//
// It exists so that a delivery service can read the public parts of what
// clients send (wire format, group_id, epoch and content type of framed
// messages, the cipher suite and new-member references of a Welcome, the
// group context of a GroupInfo, and key packages with their signatures and
// references) instead of trusting fields the client declares beside them.
//
// It is not an MLS client: it never decrypts, derives keys, or tracks group
// state. Decoding is strict (minimal varints, no trailing bytes, known
// structural enum values) and canonical, so any value that parses re-encodes
// to exactly the bytes it came from. Decoded byte slices alias the input
// buffer; callers that keep a parsed value must not modify that buffer.
//
// Inputs are bounded (see MaxMessageSize and MaxElements) and no length read
// from the input is trusted beyond the bytes actually present, so hostile
// input costs memory proportional to its size and never panics.
package mlswire

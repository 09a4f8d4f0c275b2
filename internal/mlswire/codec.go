package mlswire

import (
	"encoding/binary"
	"fmt"
)

// MaxMessageSize is the largest input, in bytes, that Unmarshal and the Parse
// functions accept. It sits above the delivery service's 10 MB message body
// limit so that the endpoint limit is the one that binds.
const MaxMessageSize = 16 << 20

// MaxElements bounds how many vector elements (proposals, extensions,
// capabilities, tree nodes, ...) one decode may produce. Each element costs
// at least one input byte but may cost tens of bytes of memory, so the cap
// keeps hostile input from amplifying into large allocations.
const MaxElements = 1 << 18

// Value is implemented by every wire structure of this package. It is sealed:
// only this package's types satisfy it.
type Value interface {
	unmarshal(r *reader)
	marshal(w *writer)
}

// Unmarshal decodes b into v, which must be a pointer to one of this
// package's wire structures. The whole input must be consumed; leftover
// bytes are ErrTrailingData. Byte slices in v alias b.
func Unmarshal(b []byte, v Value) error {
	if len(b) > MaxMessageSize {
		return fmt.Errorf("mlswire: %d bytes exceeds limit of %d: %w", len(b), MaxMessageSize, ErrTooLarge)
	}
	r := reader{b: b, st: &decodeState{budget: MaxElements}}
	v.unmarshal(&r)
	if r.st.err != nil {
		return r.st.err
	}
	if len(r.b) != 0 {
		return fmt.Errorf("mlswire: %d bytes after structure: %w", len(r.b), ErrTrailingData)
	}
	return nil
}

// Marshal encodes v, which must be a pointer to one of this package's wire
// structures. It fails with ErrMalformed if v holds a value the wire format
// cannot express (an unknown selector, a missing variant, an over-long
// vector).
func Marshal(v Value) ([]byte, error) {
	var w writer
	v.marshal(&w)
	if w.err != nil {
		return nil, w.err
	}
	return w.b, nil
}

// decodeState is shared by a reader and all sub-readers of its vectors: the
// first error sticks, and the element budget is global to one decode.
type decodeState struct {
	err    error
	budget int
}

// reader consumes big-endian TLS-presentation-language values from b. After
// the first failure every read returns zero values; the structure decoders
// check failed() at entry and wrap the error with their name on the way out.
type reader struct {
	b  []byte
	st *decodeState
}

func (r *reader) failed() bool { return r.st.err != nil }

func (r *reader) fail(err error) {
	if r.st.err == nil {
		r.st.err = err
	}
	r.b = nil
}

// wrap adds context to an error raised while decoding the named structure.
// Decoders call it once, at the end, only when they did not start failed.
func (r *reader) wrap(what string) {
	if r.st.err != nil {
		r.st.err = fmt.Errorf("%s: %w", what, r.st.err)
	}
}

// take returns the next n bytes, capped so that appending to the result can
// never write into the rest of the input.
func (r *reader) take(n int) []byte {
	if r.failed() {
		return nil
	}
	if n > len(r.b) {
		r.fail(fmt.Errorf("need %d bytes, have %d: %w", n, len(r.b), ErrTruncated))
		return nil
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) u8() uint8 {
	p := r.take(1)
	if p == nil {
		return 0
	}
	return p[0]
}

func (r *reader) u16() uint16 {
	p := r.take(2)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint16(p)
}

func (r *reader) u32() uint32 {
	p := r.take(4)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint32(p)
}

func (r *reader) u64() uint64 {
	p := r.take(8)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint64(p)
}

// opaque reads a variable-length vector header and returns the bytes it
// covers, never trusting the length beyond what is present.
func (r *reader) opaque() []byte {
	if r.failed() {
		return nil
	}
	n, used, err := consumeVarint(r.b)
	if err != nil {
		r.fail(fmt.Errorf("vector length: %w", err))
		return nil
	}
	r.b = r.b[used:]
	return r.take(int(n))
}

// sub reads a variable-length vector and returns a reader over its content.
func (r *reader) sub() *reader {
	return &reader{b: r.opaque(), st: r.st}
}

// optional reads the presence octet of optional<T> (RFC 9420 §2.1.1 in the
// style of TLS 1.3): 0 for absent, 1 for present, anything else malformed.
func (r *reader) optional() bool {
	switch v := r.u8(); v {
	case 0:
		return false
	case 1:
		return true
	default:
		r.fail(fmt.Errorf("optional presence octet %d: %w", v, ErrMalformed))
		return false
	}
}

// readList decodes a vector of T, each element with elem, charging every
// element against the decode's element budget.
func readList[T any](r *reader, what string, elem func(*T, *reader)) []T {
	sr := r.sub()
	var out []T
	for len(sr.b) > 0 && !sr.failed() {
		if sr.st.budget <= 0 {
			sr.fail(fmt.Errorf("%s: more than %d elements: %w", what, MaxElements, ErrTooLarge))
			break
		}
		sr.st.budget--
		out = append(out, *new(T))
		elem(&out[len(out)-1], sr)
		if sr.failed() {
			sr.st.err = fmt.Errorf("%s[%d]: %w", what, len(out)-1, sr.st.err)
		}
	}
	if r.failed() {
		return nil
	}
	return out
}

func readU16List[T ~uint16](r *reader, what string) []T {
	return readList(r, what, func(v *T, r *reader) { *v = T(r.u16()) })
}

// writer appends TLS-presentation-language values to b. The first error
// sticks and turns later writes into no-ops.
type writer struct {
	b   []byte
	err error
}

func (w *writer) fail(err error) {
	if w.err == nil {
		w.err = err
	}
}

func (w *writer) u8(v uint8)   { w.b = append(w.b, v) }
func (w *writer) u16(v uint16) { w.b = binary.BigEndian.AppendUint16(w.b, v) }
func (w *writer) u32(v uint32) { w.b = binary.BigEndian.AppendUint32(w.b, v) }
func (w *writer) u64(v uint64) { w.b = binary.BigEndian.AppendUint64(w.b, v) }

func (w *writer) opaque(p []byte) {
	var err error
	w.b, err = appendVarint(w.b, uint64(len(p)))
	if err != nil {
		w.fail(fmt.Errorf("vector of %d bytes: %w", len(p), err))
		return
	}
	w.b = append(w.b, p...)
}

func (w *writer) optional(present bool) {
	if present {
		w.u8(1)
	} else {
		w.u8(0)
	}
}

// vector writes a variable-length vector whose content body produces. The
// header length is known only afterwards, so the content is shifted right
// to make room for it.
func (w *writer) vector(body func()) {
	start := len(w.b)
	body()
	n := len(w.b) - start
	hl := varintLen(uint64(n))
	if hl == 0 {
		w.fail(fmt.Errorf("vector of %d bytes: %w", n, ErrMalformed))
		return
	}
	var hdr [4]byte
	h, _ := appendVarint(hdr[:0], uint64(n))
	w.b = append(w.b, hdr[:hl]...)
	copy(w.b[start+hl:], w.b[start:start+n])
	copy(w.b[start:], h)
}

func writeList[T any](w *writer, xs []T, elem func(*T, *writer)) {
	w.vector(func() {
		for i := range xs {
			elem(&xs[i], w)
		}
	})
}

func writeU16List[T ~uint16](w *writer, xs []T) {
	writeList(w, xs, func(v *T, w *writer) { w.u16(uint16(*v)) })
}

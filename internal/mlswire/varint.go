package mlswire

// MaxVarint is the largest value a variable-length integer can hold
// (RFC 9420 §2.1.2: 30 bits in the four-byte form).
const MaxVarint = 1<<30 - 1

// consumeVarint decodes the variable-length integer at the start of b and
// returns it with the number of bytes it used. RFC 9420 §2.1.2 requires the
// minimum-length encoding and reserves the 0b11 prefix; both are rejected.
func consumeVarint(b []byte) (uint64, int, error) {
	if len(b) == 0 {
		return 0, 0, ErrTruncated
	}
	switch b[0] >> 6 {
	case 0:
		return uint64(b[0]), 1, nil
	case 1:
		if len(b) < 2 {
			return 0, 0, ErrTruncated
		}
		v := uint64(b[0]&0x3f)<<8 | uint64(b[1])
		if v < 1<<6 {
			return 0, 0, ErrInvalidVarint
		}
		return v, 2, nil
	case 2:
		if len(b) < 4 {
			return 0, 0, ErrTruncated
		}
		v := uint64(b[0]&0x3f)<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])
		if v < 1<<14 {
			return 0, 0, ErrInvalidVarint
		}
		return v, 4, nil
	default:
		return 0, 0, ErrInvalidVarint
	}
}

// varintLen returns how many bytes the minimal encoding of v takes, or 0 if
// v exceeds MaxVarint.
func varintLen(v uint64) int {
	switch {
	case v < 1<<6:
		return 1
	case v < 1<<14:
		return 2
	case v <= MaxVarint:
		return 4
	default:
		return 0
	}
}

// appendVarint appends the minimal encoding of v to b. It reports
// ErrMalformed if v exceeds MaxVarint.
func appendVarint(b []byte, v uint64) ([]byte, error) {
	switch varintLen(v) {
	case 1:
		return append(b, byte(v)), nil
	case 2:
		return append(b, 0x40|byte(v>>8), byte(v)), nil
	case 4:
		return append(b, 0x80|byte(v>>24), byte(v>>16), byte(v>>8), byte(v)), nil
	default:
		return b, ErrMalformed
	}
}

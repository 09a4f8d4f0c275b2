package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// macDomain separates the audit chain's MACs from any other use of the key.
const macDomain = "cairn-caddy audit v1\x00"

// MAC returns the row's chain MAC: HMAC-SHA256 under key over the previous
// row's MAC and every field of r but its MAC, each length-prefixed so no
// two different rows encode alike. The time counts at millisecond
// precision, as the store keeps it.
func MAC(key, prev []byte, r store.AuditRecord) []byte {
	m := hmac.New(sha256.New, key)
	var buf [binary.MaxVarintLen64]byte
	field := func(b []byte) {
		m.Write(buf[:binary.PutUvarint(buf[:], uint64(len(b)))])
		m.Write(b)
	}
	num := func(v int64) {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(v))
		m.Write(b[:])
	}
	m.Write([]byte(macDomain))
	field(prev)
	num(r.Seq)
	num(r.Time.UnixMilli())
	field([]byte(r.Type))
	field([]byte(r.Actor))
	field([]byte(r.Target))
	field(r.Metadata)
	field([]byte(r.IP))
	return m.Sum(nil)
}

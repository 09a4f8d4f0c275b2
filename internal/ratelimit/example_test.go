package ratelimit_test

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/ratelimit"
)

// A zone's limit, a key built from the zone and the client address, and the
// headers of a refusal.
func Example() {
	rate, period, err := ratelimit.ParseRate("60/1m")
	if err != nil {
		panic(err)
	}
	zone := ratelimit.Limit{Rate: rate, Period: period, Burst: 6}
	lim := ratelimit.NewMemoryStore(ratelimit.MemoryConfig{})
	key := "ip|" + ratelimit.IPKey(netip.MustParseAddr("2001:db8:1:2::99"))

	var res ratelimit.Result
	for i := 0; i < 7; i++ {
		res, err = lim.Allow(context.Background(), key, zone)
		if err != nil {
			panic(err)
		}
	}
	h := http.Header{}
	res.SetHeaders(h)
	fmt.Println(key, res.Allowed, res.Source)
	fmt.Println(h.Get("Retry-After"), h.Get("RateLimit-Limit"), h.Get("RateLimit-Remaining"), h.Get("RateLimit-Reset"))
	fmt.Println(res.RetryAfter <= time.Second)
	// Output:
	// ip|2001:db8:1:2::/64 false local
	// 1 6 0 6
	// true
}

package ratelimit

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// countingLimiter counts the calls that reach a Limiter.
type countingLimiter struct {
	Limiter
	calls atomic.Int64
}

func (c *countingLimiter) Allow(ctx context.Context, key string, l Limit) (Result, error) {
	c.calls.Add(1)
	return c.Limiter.Allow(ctx, key, l)
}

// switchLimiter is a shared store that can be broken and mended without a
// network: while broken it fails every call.
type switchLimiter struct {
	Limiter
	broken atomic.Bool
}

var errBackendDown = errors.New("backend down")

func (s *switchLimiter) Allow(ctx context.Context, key string, l Limit) (Result, error) {
	if s.broken.Load() {
		return Result{}, errBackendDown
	}
	return s.Limiter.Allow(ctx, key, l)
}

// transitions records OnTransition calls.
type transitions struct {
	mu  sync.Mutex
	ups []bool
}

func (tr *transitions) record(up bool, err error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if up != (err == nil) {
		panic("OnTransition: up must come with a nil error and down with the cause")
	}
	tr.ups = append(tr.ups, up)
}

func (tr *transitions) get() []bool {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]bool(nil), tr.ups...)
}

func equalBools(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestParsePolicy(t *testing.T) {
	tests := []struct {
		in      string
		want    Policy
		wantErr bool
	}{
		{in: "local", want: PolicyLocal},
		{in: "allow", want: PolicyAllow},
		{in: "deny", want: PolicyDeny},
		{in: "", wantErr: true},
		{in: "Local", wantErr: true},
		{in: "open", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParsePolicy(tt.in)
		if tt.wantErr {
			if !errors.Is(err, ErrInvalidPolicy) {
				t.Errorf("ParsePolicy(%q) error = %v, want ErrInvalidPolicy", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want || got.String() != tt.in {
			t.Errorf("ParsePolicy(%q) = %v, %v", tt.in, got, err)
		}
	}
	if _, err := NewFailover(FailoverConfig{}); !errors.Is(err, ErrNoSharedStore) {
		t.Errorf("NewFailover without a shared store: %v, want ErrNoSharedStore", err)
	}
}

// failoverCase is what one policy must do while the shared store is down.
type failoverCase struct {
	policy Policy
	// want is the (allowed, source) of each of three requests for one key
	// with a burst of 2 while the shared store is down.
	want [3]Result
}

var failoverCases = []failoverCase{
	{policy: PolicyLocal, want: [3]Result{
		{Allowed: true, Source: SourceFallback},
		{Allowed: true, Source: SourceFallback},
		{Allowed: false, Source: SourceFallback},
	}},
	{policy: PolicyAllow, want: [3]Result{
		{Allowed: true, Source: SourceFailOpen},
		{Allowed: true, Source: SourceFailOpen},
		{Allowed: true, Source: SourceFailOpen},
	}},
	{policy: PolicyDeny, want: [3]Result{
		{Allowed: false, Source: SourceFailClosed},
		{Allowed: false, Source: SourceFailClosed},
		{Allowed: false, Source: SourceFailClosed},
	}},
}

// backend is a shared store the failover test can break and mend.
type backend struct {
	shared Limiter
	cut    func()
	mend   func()
}

// runFailoverOutage drives one outage and recovery through a Failover over
// b with a fake clock, and checks the policy, the probe pacing, the
// transitions and the return to the shared store.
func runFailoverOutage(t *testing.T, tc failoverCase, b backend) {
	clk := newFakeClock()
	counted := &countingLimiter{Limiter: b.shared}
	var tr transitions
	f, err := NewFailover(FailoverConfig{
		Shared:       counted,
		Local:        NewMemoryStore(MemoryConfig{Now: clk.Now}),
		Policy:       tc.policy,
		OnTransition: tr.record,
		Now:          clk.Now,
	})
	testenv.Must(t, err, "new failover")
	l := Limit{Rate: 2, Period: time.Hour}
	allow := func(step string) Result {
		t.Helper()
		res, err := f.Allow(context.Background(), "zone|did:plc:alice", l)
		if err != nil {
			t.Fatalf("%s: Allow: %v", step, err)
		}
		return res
	}

	// Healthy: the shared store decides.
	if res := allow("healthy"); !res.Allowed || res.Source != SourceShared || res.Remaining != 1 {
		t.Fatalf("healthy: %+v, want allowed by shared with 1 remaining", res)
	}

	// Outage: the first failure takes the store down; the policy decides.
	b.cut()
	for i, want := range tc.want {
		res := allow("outage")
		if res.Allowed != want.Allowed || res.Source != want.Source {
			t.Fatalf("outage request %d: allowed=%v source=%s, want allowed=%v source=%s",
				i+1, res.Allowed, res.Source, want.Allowed, want.Source)
		}
		if want.Source == SourceFailClosed && res.RetryAfterSeconds() != 1 {
			t.Fatalf("fail-closed Retry-After = %d, want the probe interval, 1", res.RetryAfterSeconds())
		}
	}
	if got := tr.get(); !equalBools(got, []bool{false}) {
		t.Fatalf("transitions after outage = %v, want one down", got)
	}
	if f.Up() {
		t.Fatal("Up() = true during the outage")
	}
	// Only the first outage request reached the shared store: no hammering.
	if got := counted.calls.Load(); got != 2 {
		t.Fatalf("shared store calls = %d, want 2 (healthy + the failure)", got)
	}
	for i := 0; i < 20; i++ {
		allow("outage, same second")
	}
	if got := counted.calls.Load(); got != 2 {
		t.Fatalf("shared store calls = %d after 20 more requests within the probe interval, want still 2", got)
	}

	// A second later one request probes; it fails and nothing is reported.
	clk.Advance(time.Second)
	allow("probe while down")
	allow("after probe")
	if got := counted.calls.Load(); got != 3 {
		t.Fatalf("shared store calls = %d, want 3: one probe per interval", got)
	}
	if got := tr.get(); !equalBools(got, []bool{false}) {
		t.Fatalf("transitions after a failed probe = %v, want still one down", got)
	}

	// Recovery: the next probe succeeds and the shared store decides again,
	// with its state from before the outage (one of two spent).
	b.mend()
	if res := allow("mended, before the probe interval"); res.Source == SourceShared {
		t.Fatalf("shared store used again before the probe interval: %+v", res)
	}
	clk.Advance(time.Second)
	if res := allow("probe after mend"); !res.Allowed || res.Source != SourceShared || res.Remaining != 0 {
		t.Fatalf("probe after mend: %+v, want allowed by shared with 0 remaining", res)
	}
	if res := allow("after recovery"); res.Allowed || res.Source != SourceShared {
		t.Fatalf("after recovery: %+v, want refused by shared: its state survived the outage", res)
	}
	if got := tr.get(); !equalBools(got, []bool{false, true}) {
		t.Fatalf("transitions = %v, want exactly one down and one up", got)
	}
	if !f.Up() {
		t.Fatal("Up() = false after recovery")
	}
}

func TestFailoverPolicies(t *testing.T) {
	for _, tc := range failoverCases {
		t.Run(tc.policy.String(), func(t *testing.T) {
			sw := &switchLimiter{Limiter: NewMemoryStore(MemoryConfig{})}
			runFailoverOutage(t, tc, backend{
				shared: sw,
				cut:    func() { sw.broken.Store(true) },
				mend:   func() { sw.broken.Store(false) },
			})
		})
	}
}

// TestFailoverRedisOutage breaks a real Redis connection with a TCP proxy
// that refuses connections while cut, and mends it.
func TestFailoverRedisOutage(t *testing.T) {
	for _, tc := range failoverCases {
		t.Run(tc.policy.String(), func(t *testing.T) {
			_, prefix := testenv.Redis(t)
			opts, err := redis.ParseURL(testenv.RedisURL())
			testenv.Must(t, err, "parse redis url")
			p := startProxy(t, opts.Addr)
			opts.Addr = p.addr
			// Fail fast: one dial attempt and no command retries, as the
			// cairn app should configure the limiter's client.
			opts.MaxRetries = -1
			opts.DialerRetries = 1
			client := redis.NewClient(opts)
			t.Cleanup(func() { _ = client.Close() })
			shared, err := NewRedisStore(RedisConfig{Client: client, Prefix: prefix, Timeout: 5 * time.Second})
			testenv.Must(t, err, "new redis store")
			runFailoverOutage(t, tc, backend{shared: shared, cut: p.cut, mend: func() { p.mend(t) }})
		})
	}
}

func TestFailoverCallerCancelIsNotAnOutage(t *testing.T) {
	var tr transitions
	shared := LimiterFunc(func(ctx context.Context, _ string, _ Limit) (Result, error) {
		<-ctx.Done()
		return Result{}, ctx.Err()
	})
	f, err := NewFailover(FailoverConfig{Shared: shared, OnTransition: tr.record})
	testenv.Must(t, err, "new failover")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = f.Allow(ctx, "k", Limit{Rate: 1, Period: time.Second})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Allow with a cancelled context: %v, want context.Canceled", err)
	}
	if !f.Up() || len(tr.get()) != 0 {
		t.Fatalf("a cancelled caller took the shared store down (transitions %v)", tr.get())
	}
}

func TestFailoverInvalidLimit(t *testing.T) {
	counted := &countingLimiter{Limiter: NewMemoryStore(MemoryConfig{})}
	f, err := NewFailover(FailoverConfig{Shared: counted})
	testenv.Must(t, err, "new failover")
	if _, err := f.Allow(context.Background(), "k", Limit{}); !errors.Is(err, ErrInvalidLimit) {
		t.Fatalf("Allow with a zero Limit: %v, want ErrInvalidLimit", err)
	}
	if !f.Up() || counted.calls.Load() != 0 {
		t.Fatal("an invalid limit reached the shared store or took it down")
	}
}

func TestFailoverConcurrentOutageReportsOnce(t *testing.T) {
	clk := newFakeClock()
	sw := &switchLimiter{Limiter: NewMemoryStore(MemoryConfig{Now: clk.Now})}
	var tr transitions
	f, err := NewFailover(FailoverConfig{Shared: sw, OnTransition: tr.record, Now: clk.Now})
	testenv.Must(t, err, "new failover")
	l := Limit{Rate: 1000, Period: time.Second}
	run := func() {
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 200; i++ {
					if _, err := f.Allow(context.Background(), "k", l); err != nil {
						t.Errorf("Allow: %v", err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	sw.broken.Store(true)
	run()
	sw.broken.Store(false)
	clk.Advance(time.Second)
	run()
	if got := tr.get(); !equalBools(got, []bool{false, true}) {
		t.Fatalf("transitions = %v under concurrency, want exactly one down and one up", got)
	}
}

func TestFailoverHeaders(t *testing.T) {
	// Synthetic decisions carry no counter, so only a refusal's Retry-After
	// is written.
	tests := []struct {
		name string
		res  Result
		want http.Header
	}{
		{name: "fail open", res: Result{Allowed: true, Source: SourceFailOpen}, want: http.Header{}},
		{name: "fail closed", res: Result{RetryAfter: time.Second, Source: SourceFailClosed},
			want: http.Header{"Retry-After": {"1"}}},
	}
	for _, tt := range tests {
		h := http.Header{}
		tt.res.SetHeaders(h)
		if len(h) != len(tt.want) || h.Get("Retry-After") != tt.want.Get("Retry-After") {
			t.Errorf("%s: headers %v, want %v", tt.name, h, tt.want)
		}
	}
}

// tcpProxy forwards TCP connections to a target. Cut closes its listener
// and every connection, so clients see connection refused, as with a dead
// Redis; mend listens again on the same address.
type tcpProxy struct {
	target, addr string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
}

func startProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	testenv.Must(t, err, "proxy listen")
	p := &tcpProxy{target: target, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	p.serve(ln)
	t.Cleanup(p.cut)
	return p
}

func (p *tcpProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.pipe(c)
		}
	}()
}

func (p *tcpProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *tcpProxy) pipe(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		_ = client.Close()
		return
	}
	if !p.track(client) || !p.track(server) {
		_ = client.Close()
		_ = server.Close()
		return
	}
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		_ = dst.Close()
		_ = src.Close()
		done <- struct{}{}
	}
	go cp(server, client)
	go cp(client, server)
	<-done
	<-done
}

func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		_ = c.Close()
		delete(p.conns, c)
	}
}

func (p *tcpProxy) mend(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	testenv.Must(t, err, "proxy listen again on "+p.addr)
	p.serve(ln)
}

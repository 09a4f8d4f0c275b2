package chaos

import (
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/atcrypto"

	"github.com/cairn-chat/cairn-caddy/internal/atprototest"
	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
	"github.com/cairn-chat/cairn-caddy/internal/mlswire"
	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/store/postgres"
	"github.com/cairn-chat/cairn-caddy/internal/store/sqlite"
)

const (
	serviceDID  = "did:web:gateway.chaos.test"
	nsidSend    = "blue.catbird.mls.sendMessage"
	nsidGet     = "blue.catbird.mls.getMessages"
	nsidEpoch   = "blue.catbird.mls.getEpoch"
	cipherSuite = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519"
	messageSize = 512
	senders     = 6
)

// caddyfile is the gateway under test: plain HTTP on loopback, the cairn
// app in development mode resolving DIDs through the test's PLC
// directory, service auth, a per-DID rate limit too generous to refuse the
// load (on Redis when the app has it, so a Redis outage meets its
// fallback), and the delivery service. Arguments: admin port, PLC URL,
// data dir, database line, redis line, site port, replay store.
const caddyfile = `{
	admin 127.0.0.1:%d
	cairn {
		mode development
		plc_url %s
		data_dir %s
		%s
		%s
	}
}
http://127.0.0.1:%d {
	cairn_request_id
	route /xrpc/* {
		cairn_auth {
			service_did ` + serviceDID + `
			replay %s
			leeway 1s
		}
		cairn_rate_limit {
			zone chaos_send {
				key did
				rate 100000/1m
				burst 10000
			}
		}
		cairn_delivery
		error 501
	}
	handle_errors {
		cairn_xrpc_errors
	}
}
`

var builder gatewaytest.Builder

func TestMain(m *testing.M) {
	code := m.Run()
	builder.Cleanup()
	os.Exit(code)
}

// setup is one test's gateway configuration, identities and conversation.
type setup struct {
	t         *testing.T
	home      string
	dbURL     string // empty: SQLite in home
	redisURL  string // empty: the memory replay store
	sitePort  int
	adminPort int
	key       atcrypto.PrivateKeyExportable
	plc       *atprototest.PLC
	dids      []string
	convo     string
}

// newSetup makes the identities, publishes them, and seeds a conversation
// whose members are the senders, directly in the store the gateway will
// open.
func newSetup(t *testing.T, dbURL, redisURL string) *setup {
	t.Helper()
	s := &setup{t: t, home: t.TempDir(), dbURL: dbURL, redisURL: redisURL,
		sitePort: gatewaytest.FreePort(t), adminPort: gatewaytest.FreePort(t), plc: atprototest.NewPLC(t)}
	var err error
	if s.key, err = atcrypto.GeneratePrivateKeyP256(); err != nil {
		t.Fatal(err)
	}
	pub, err := s.key.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	enc := base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)
	for range senders {
		b := make([]byte, 15)
		_, _ = rand.Read(b)
		did := "did:plc:" + enc.EncodeToString(b)
		s.plc.Publish(did, atprototest.MintedKey{Multibase: pub.Multibase()})
		s.dids = append(s.dids, did)
	}
	gid := make([]byte, 16)
	_, _ = rand.Read(gid)
	s.convo = hex.EncodeToString(gid)

	st := s.openStore()
	defer st.Close()
	members := make([]store.NewMember, len(s.dids))
	for i, d := range s.dids {
		members[i] = store.NewMember{MemberDID: d}
	}
	members[0].Role = store.RoleAdmin
	if _, err := st.CreateConvo(t.Context(), store.NewConvo{ID: s.convo, CreatorDID: s.dids[0], CipherSuite: cipherSuite, Members: members}); err != nil {
		t.Fatalf("seed conversation: %v", err)
	}
	return s
}

func (s *setup) dataDir() string { return filepath.Join(s.home, "data") }

// openStore opens (and migrates) the store the gateway uses.
func (s *setup) openStore() store.Store {
	s.t.Helper()
	var st store.Store
	var err error
	if s.dbURL != "" {
		st, err = postgres.Open(s.t.Context(), postgres.Config{URL: s.dbURL})
	} else {
		if err = os.MkdirAll(s.dataDir(), 0o700); err == nil {
			st, err = sqlite.Open(s.t.Context(), sqlite.Config{Path: filepath.Join(s.dataDir(), "cairn.db")})
		}
	}
	if err != nil {
		s.t.Fatalf("open store: %v", err)
	}
	return st
}

// start runs the gateway; a restart reuses the same home, ports and store.
func (s *setup) start() *gatewaytest.Gateway {
	s.t.Helper()
	db, rd, replay := "", "", "memory"
	if s.dbURL != "" {
		db = "database " + s.dbURL
	}
	if s.redisURL != "" {
		rd, replay = "redis "+s.redisURL, "redis"
	}
	g := gatewaytest.Start(s.t, &builder, gatewaytest.Options{
		Caddyfile: fmt.Sprintf(caddyfile, s.adminPort, s.plc.URL, s.dataDir(), db, rd, s.sitePort, replay),
		Home:      s.home,
		AdminPort: s.adminPort,
	})
	s.t.Cleanup(func() {
		if logs := g.Logs(); s.t.Failed() {
			s.t.Logf("gateway log (last 8 KiB):\n%s", logs[max(0, len(logs)-8<<10):])
		}
	})
	// The gateway refuses tokens issued before its replay memory began
	// (at its start, with the memory store) plus its leeway; tokens the
	// load mints from here on are past that.
	gatewaytest.FreshIat(time.Now(), time.Second)
	return g
}

func (s *setup) base() string { return fmt.Sprintf("http://127.0.0.1:%d", s.sitePort) }

// token mints a single-use service-auth JWT from did for method lxm.
func (s *setup) token(did, lxm string) string {
	now := time.Now().Unix()
	jti := make([]byte, 16)
	_, _ = rand.Read(jti)
	claims, _ := json.Marshal(map[string]any{"iss": did, "aud": serviceDID, "lxm": lxm,
		"iat": now, "exp": now + 60, "jti": hex.EncodeToString(jti)})
	input := base64.RawURLEncoding.EncodeToString([]byte(`{"typ":"JWT","alg":"ES256"}`)) + "." +
		base64.RawURLEncoding.EncodeToString(claims)
	sig, err := s.key.HashAndSign([]byte(input))
	if err != nil {
		s.t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// message frames an MLS message of the conversation (an application
// message or a commit) at epoch, messageSize bytes, whose ciphertext
// carries msgID: a retry sends the same bytes, and another message's
// bytes differ.
func (s *setup) message(msgID string, epoch uint64, ct mlswire.ContentType) []byte {
	gid, _ := hex.DecodeString(s.convo)
	pm := &mlswire.PrivateMessage{GroupID: gid, Epoch: epoch, ContentType: ct, EncryptedSenderData: make([]byte, 16)}
	msg := &mlswire.Message{Version: mlswire.ProtocolVersionMLS10, WireFormat: mlswire.WireFormatPrivateMessage, PrivateMessage: pm}
	for n := messageSize - 64; n < messageSize; n++ {
		pm.Ciphertext = make([]byte, n)
		copy(pm.Ciphertext, msgID)
		if b, err := mlswire.Marshal(msg); err == nil && len(b) == messageSize {
			return b
		}
	}
	s.t.Fatalf("cannot frame a %d-byte message", messageSize)
	return nil
}

// outcome is what one attempt got.
type outcome int

const (
	acked outcome = iota
	retry
	broken
)

// load is concurrent senders and the account of what they were told.
type load struct {
	s      *setup
	client *http.Client
	// retryable are the statuses (besides 503 and a failed connection)
	// that the fault under test may cause and a retry resolves.
	retryable []int

	next    atomic.Int64 // messages and commits started
	commits atomic.Int64 // commits acknowledged
	acks    atomic.Int64
	failed  atomic.Int64 // attempts that failed (503, no connection, retryable)
	stopNew atomic.Bool
	// abort ends every sender at once: the test failed before finish.
	abort atomic.Bool
	wg    sync.WaitGroup

	mu       sync.Mutex
	acked    map[string]int64 // msgId -> seq it was acknowledged with
	statuses map[string]int   // "503", "conn", ... -> count, for the log
	broken   []string         // what must never happen
}

func newLoad(s *setup, retryable ...int) *load {
	return &load{s: s, retryable: retryable, acked: map[string]int64{}, statuses: map[string]int{},
		client: &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: senders}}}
}

// start runs the senders: each sends new application messages until
// stop, and one of them commits, one epoch after the other; each message
// is retried with its msgId until it is acknowledged. A test that ends
// early stops them.
func (l *load) start() {
	l.s.t.Cleanup(func() {
		l.stopNew.Store(true)
		l.abort.Store(true)
		l.wg.Wait()
	})
	for i := range senders {
		l.wg.Go(func() {
			did := l.s.dids[i]
			for !l.stopNew.Load() {
				id := fmt.Sprintf("m%06d", l.next.Add(1))
				l.sendUntilAcked(did, id, 0, mlswire.ContentTypeApplication)
			}
		})
	}
	l.wg.Go(func() {
		for epoch := uint64(0); !l.stopNew.Load(); epoch++ {
			l.next.Add(1)
			if l.sendUntilAcked(l.s.dids[0], fmt.Sprintf("c%06d", epoch), epoch, mlswire.ContentTypeCommit) {
				l.commits.Add(1)
			}
			time.Sleep(20 * time.Millisecond) // commits are rarer than messages
		}
	})
}

// sendUntilAcked retries one message until it is acknowledged, giving up
// (as a failure of the test) only after a bound far past any recovery. It
// reports whether the message was acknowledged.
func (l *load) sendUntilAcked(did, msgID string, epoch uint64, ct mlswire.ContentType) bool {
	body := l.s.message(msgID, epoch, ct)
	deadline := time.Now().Add(3 * time.Minute)
	for attempt := 0; ; attempt++ {
		switch l.send(did, msgID, epoch, body) {
		case acked:
			return true
		case broken:
			return false
		}
		l.failed.Add(1)
		if l.abort.Load() {
			return false
		}
		if time.Now().After(deadline) {
			l.fail("%s never acknowledged", msgID)
			return false
		}
		time.Sleep(time.Duration(min(attempt+1, 10)) * 20 * time.Millisecond)
	}
}

// send makes one attempt.
func (l *load) send(did, msgID string, epoch uint64, ct []byte) outcome {
	req, _ := json.Marshal(map[string]any{"convoId": l.s.convo, "msgId": msgID, "epoch": epoch, "paddedSize": messageSize,
		"ciphertext": map[string]string{"$bytes": base64.RawStdEncoding.EncodeToString(ct)}})
	r, _ := http.NewRequest(http.MethodPost, l.s.base()+"/xrpc/"+nsidSend, bytes.NewReader(req))
	r.Header.Set("Authorization", "Bearer "+l.s.token(did, nsidSend))
	r.Header.Set("Content-Type", "application/json")
	resp, err := l.client.Do(r)
	if err != nil {
		l.count("no connection")
		return retry
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		l.count("cut off")
		return retry
	}
	l.count(resp.Status)
	switch {
	case resp.StatusCode == http.StatusOK:
		var out struct {
			MessageID string `json:"messageId"`
			Seq       int64  `json:"seq"`
		}
		if err := json.Unmarshal(b, &out); err != nil || out.MessageID != msgID || out.Seq <= 0 {
			l.fail("%s: 200 with %s", msgID, b)
			return broken
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		if prev, ok := l.acked[msgID]; ok && prev != out.Seq {
			l.broken = append(l.broken, fmt.Sprintf("%s acknowledged at seq %d, then %d", msgID, prev, out.Seq))
		}
		l.acked[msgID] = out.Seq
		l.acks.Add(1)
		return acked
	case resp.StatusCode == http.StatusServiceUnavailable:
		var xe struct {
			Error string `json:"error"`
		}
		if resp.Header.Get("Retry-After") == "" || json.Unmarshal(b, &xe) != nil || xe.Error == "" {
			l.fail("%s: 503 without Retry-After or an XRPC error body: %s", msgID, b)
		}
		return retry
	case slices.Contains(l.retryable, resp.StatusCode):
		return retry
	}
	l.fail("%s: %s %s", msgID, resp.Status, b)
	return broken
}

func (l *load) count(what string) {
	l.mu.Lock()
	l.statuses[what]++
	l.mu.Unlock()
}

func (l *load) fail(format string, a ...any) {
	l.mu.Lock()
	l.broken = append(l.broken, fmt.Sprintf(format, a...))
	l.mu.Unlock()
}

// waitAcks waits until n more sends than now are acknowledged.
func (l *load) waitAcks(t *testing.T, n int64) {
	t.Helper()
	want := l.acks.Load() + n
	eventually(t, fmt.Sprintf("%d acknowledged sends", want), func() bool { return l.acks.Load() >= want })
}

// waitFailures waits until the load has met the fault: n more failed
// attempts than now.
func (l *load) waitFailures(t *testing.T, from, n int64) {
	t.Helper()
	eventually(t, "the load meets the fault", func() bool { return l.failed.Load() >= from+n })
}

// finish stops new sends, waits for every send in flight to be
// acknowledged, and checks the account against what the gateway holds.
func (l *load) finish(t *testing.T) {
	t.Helper()
	l.stopNew.Store(true)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	t.Logf("answers: %v; %d messages acknowledged, %d of them commits", l.statuses, len(l.acked), l.commits.Load())
	for _, b := range l.broken {
		t.Error(b)
	}
	if int64(len(l.acked)) != l.next.Load() {
		t.Errorf("%d messages sent, %d acknowledged: every send must resolve", l.next.Load(), len(l.acked))
	}
	stored := l.s.allMessages()
	seen := map[string]bool{}
	for i, m := range stored {
		if seen[m.ID] {
			t.Errorf("message %s stored twice", m.ID)
		}
		seen[m.ID] = true
		if m.Seq != int64(i+1) {
			t.Fatalf("message %d of the conversation has seq %d: seq must run 1..n without a gap", i+1, m.Seq)
		}
		seq, ok := l.acked[m.ID]
		if !ok {
			t.Errorf("message %s (seq %d) stored but never acknowledged", m.ID, m.Seq)
		} else if seq != m.Seq {
			t.Errorf("message %s acknowledged at seq %d, stored at %d", m.ID, seq, m.Seq)
		}
	}
	for id := range l.acked {
		if !seen[id] {
			t.Errorf("acknowledged message %s is lost", id)
		}
	}
	// Every acknowledged commit advanced the epoch once.
	if ep := l.s.epoch(); ep != l.commits.Load() {
		t.Errorf("epoch %d after %d acknowledged commits", ep, l.commits.Load())
	}
	// The event stream, read from the store itself: one event per
	// stored message, none for a retry.
	events := map[string]int{}
	for _, ev := range l.s.allEvents() {
		if ev.Kind == store.EventMessage || ev.Kind == store.EventCommit {
			events[ev.MessageID]++
		}
	}
	for id := range seen {
		if events[id] != 1 {
			t.Errorf("message %s has %d events, want 1", id, events[id])
		}
	}
	if len(events) != len(seen) {
		t.Errorf("%d message events for %d messages", len(events), len(seen))
	}
}

// epoch reads the conversation's epoch through getEpoch.
func (s *setup) epoch() int64 {
	s.t.Helper()
	r, _ := http.NewRequest(http.MethodGet, s.base()+"/xrpc/"+nsidEpoch+"?"+url.Values{"convoId": {s.convo}}.Encode(), nil)
	r.Header.Set("Authorization", "Bearer "+s.token(s.dids[0], nsidEpoch))
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(r)
	if err != nil {
		s.t.Fatalf("getEpoch: %v", err)
	}
	defer resp.Body.Close()
	var out struct {
		CurrentEpoch *int64 `json:"currentEpoch"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || out.CurrentEpoch == nil {
		s.t.Fatalf("getEpoch: %s %v", resp.Status, err)
	}
	return *out.CurrentEpoch
}

// allEvents reads the conversation's event rows from the store.
func (s *setup) allEvents() []store.Event {
	s.t.Helper()
	st := s.openStore()
	defer st.Close()
	var out []store.Event
	var after int64
	for {
		evs, err := st.EventsAfter(s.t.Context(), []string{s.convo}, after, 500)
		if err != nil {
			s.t.Fatalf("read events: %v", err)
		}
		if len(evs) == 0 {
			return out
		}
		out = append(out, evs...)
		after = evs[len(evs)-1].Cursor
	}
}

// storedMessage is the part of getMessages' messageView the check reads.
type storedMessage struct {
	ID  string `json:"id"`
	Seq int64  `json:"seq"`
}

// allMessages reads the whole conversation through getMessages.
func (s *setup) allMessages() []storedMessage {
	s.t.Helper()
	var out []storedMessage
	for {
		q := url.Values{"convoId": {s.convo}, "limit": {"100"}}
		if len(out) > 0 {
			q.Set("sinceSeq", fmt.Sprint(out[len(out)-1].Seq))
		}
		r, _ := http.NewRequest(http.MethodGet, s.base()+"/xrpc/"+nsidGet+"?"+q.Encode(), nil)
		r.Header.Set("Authorization", "Bearer "+s.token(s.dids[0], nsidGet))
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(r)
		if err != nil {
			s.t.Fatalf("getMessages: %v", err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			s.t.Fatalf("getMessages: %s %s %v", resp.Status, b, err)
		}
		var page struct {
			Messages []storedMessage `json:"messages"`
		}
		if err := json.Unmarshal(b, &page); err != nil {
			s.t.Fatalf("getMessages: %v: %s", err, b)
		}
		if len(page.Messages) == 0 {
			return out
		}
		out = append(out, page.Messages...)
	}
}

// soak is how long CAIRN_CHAOS_SOAK asks each test to repeat its fault;
// zero runs it once.
func soak(t *testing.T) time.Duration {
	v := os.Getenv("CAIRN_CHAOS_SOAK")
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("CAIRN_CHAOS_SOAK=%q: %v", v, err)
	}
	return d
}

// cycles runs fault once, or again and again for the soak duration.
func cycles(t *testing.T, fault func()) {
	until := time.Now().Add(soak(t))
	for {
		fault()
		if !time.Now().Before(until) || t.Failed() {
			return
		}
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/mlswire"
	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/store/open"
)

// messageSize is the size of every sent MLS message (and its paddedSize).
const messageSize = 512

// run performs one measurement and writes its report to out.
func run(ctx context.Context, cfg config, out io.Writer) error {
	limit, err := raiseNoFile()
	if err != nil {
		return err
	}
	// Each stream is one descriptor in this process and one in the server.
	if need := uint64(cfg.subscribers + 512); limit < need {
		return fmt.Errorf("open-file limit %d is below the %d descriptors %d streams need; raise the hard limit (ulimit -Hn)", limit, need, cfg.subscribers)
	}
	fmt.Fprintf(out, "open-file limit %d (this process and the gateway)\n", limit)
	if ports, err := ephemeralPorts(); err == nil && cfg.subscribers+cfg.senders+64 > ports*cfg.sourceAddrs {
		return fmt.Errorf("%d streams from %d source address(es) exceed the %d ephemeral ports each has (net.ipv4.ip_local_port_range); use -source-addrs %d",
			cfg.subscribers, cfg.sourceAddrs, ports, (cfg.subscribers+cfg.senders+64)/ports+1)
	}

	home, err := os.MkdirTemp("", "cairn-load-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(home)

	binary := cfg.binary
	if binary == "" {
		root, err := moduleRoot()
		if err != nil {
			return err
		}
		binary = filepath.Join(home, "cairn-caddy")
		fmt.Fprintln(out, "building cairn-caddy …")
		if err := buildGateway(ctx, root, binary); err != nil {
			return err
		}
	}

	ids, err := newIdentities()
	if err != nil {
		return err
	}
	plc, err := servePLC(ids)
	if err != nil {
		return err
	}
	defer plc.close()

	gcfg := gatewayConfig{binary: binary, home: home, plcURL: plc.url, verbose: cfg.verbose, maxStreams: cfg.subscribers}
	nconvos := cfg.subscribers / (cfg.members * cfg.devices)
	seedStart := time.Now()
	var st store.Store
	if cfg.storeKind == "postgres" {
		dbURL, drop, err := freshPostgres(ctx, cfg.pgURL)
		if err != nil {
			return err
		}
		defer drop()
		gcfg.dbURL = dbURL
		st, err = openStore(ctx, open.Config{Database: dbURL})
		if err != nil {
			return err
		}
	} else {
		st, err = openStore(ctx, open.Config{DataDir: gcfg.dataDir()})
		if err != nil {
			return err
		}
	}
	convos, err := seed(ctx, st, ids, nconvos, cfg.members)
	if cerr := st.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close seeding store: %w", cerr)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "seeded %d conversations × %d members on %s in %s\n", nconvos, cfg.members, cfg.storeKind, time.Since(seedStart).Round(time.Millisecond))

	g, err := startGateway(ctx, gcfg)
	if err != nil {
		return err
	}
	defer g.stop()
	l := &loadRun{cfg: cfg, out: out, g: g, ids: ids, convos: convos, t: &tracker{},
		dialer: newSourceDialer(cfg.sourceAddrs),
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.senders + 4}}}
	defer l.client.CloseIdleConnections()
	err = l.measure(ctx)
	if err != nil && g.exited() {
		err = fmt.Errorf("%w; the gateway exited:\n%s", err, tail(g.logs.String(), 4000))
	}
	return err
}

// loadRun is one measurement against a running gateway.
type loadRun struct {
	cfg    config
	out    io.Writer
	g      *gateway
	ids    *identities
	convos []convo
	t      *tracker
	client *http.Client
	dialer *sourceDialer
	subs   []*subscriber
}

// report is what a run found.
type report struct {
	held, wanted       int
	serverFDs          int
	openTime           time.Duration
	rssBefore, rssHeld int64
	// stacks and heap in use (MemStats) before and held; -1 unknown
	stacksBefore, heapBefore int64
	stacksHeld, heapHeld     int64
	loadStart, loadHeld      string // /proc/loadavg's 1, 5 and 15 min figures
	fanout                   []time.Duration
	fanoutAfterAck           []time.Duration
	fanoutMissed             int
	sendLat                  []time.Duration
	sustainedLat             []time.Duration
	sustainedSent            int64
	sustainedEvents          int64
	sustainedElapsed         time.Duration
	sustainedExpected        int64
	serverCPUFanout          time.Duration
	gcFanout                 int64 // server GC cycles during the fan-out; -1 unknown
	serverCPUSustained       time.Duration
	fanoutElapsed            time.Duration
}

func (l *loadRun) measure(ctx context.Context) error {
	cfg := l.cfg
	var r report
	r.wanted = cfg.subscribers
	time.Sleep(cfg.settle)
	var err error
	if r.rssBefore, err = rss(l.g.pid()); err != nil {
		return err
	}
	r.loadStart = loadAverage()
	if r.stacksBefore, r.heapBefore, err = l.memory(ctx); err != nil {
		r.stacksBefore, r.heapBefore = -1, -1
	}

	start := time.Now()
	if err := l.openAll(ctx); err != nil {
		return err
	}
	r.openTime = time.Since(start)
	time.Sleep(cfg.settle)
	if r.rssHeld, err = rss(l.g.pid()); err != nil {
		return err
	}
	r.held = l.open()
	r.serverFDs = countFDs(l.g.pid())
	r.loadHeld = loadAverage()
	if r.stacksHeld, r.heapHeld, err = l.memory(ctx); err != nil {
		r.stacksHeld, r.heapHeld = -1, -1
	}
	if cfg.profileDir != "" {
		if err := l.saveProfiles(ctx, "held"); err != nil {
			return err
		}
	}
	defer l.closeAll()

	var cpuProfile chan error
	if cfg.profileDir != "" && cfg.messages > 0 {
		secs := max(1, int((time.Duration(cfg.messages) * (cfg.interval + 50*time.Millisecond)).Seconds()))
		cpuProfile = make(chan error, 1)
		go func() {
			cpuProfile <- l.fetch(ctx, fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs), "fanout-cpu.pprof")
		}()
	}
	gc0, gcErr := l.numGC(ctx)
	cpu0, _ := cpuTime(l.g.pid())
	fstart := time.Now()
	if err := l.fanout(ctx, &r); err != nil {
		return err
	}
	r.fanoutElapsed = time.Since(fstart)
	cpu1, _ := cpuTime(l.g.pid())
	r.serverCPUFanout = cpu1 - cpu0
	r.gcFanout = -1
	if gc1, err := l.numGC(ctx); err == nil && gcErr == nil {
		r.gcFanout = gc1 - gc0
	}
	if cpuProfile != nil {
		if err := <-cpuProfile; err != nil {
			return err
		}
	}

	if cfg.sustained > 0 {
		if err := l.sustain(ctx, &r); err != nil {
			return err
		}
		cpu2, _ := cpuTime(l.g.pid())
		r.serverCPUSustained = cpu2 - cpu1
	}
	l.closeAll()
	for _, s := range l.subs {
		for _, a := range s.arrivals[phaseFanout] {
			r.fanout = append(r.fanout, a.at.Sub(a.m.at))
			// Arrival may precede the send's own response: count that as 0.
			r.fanoutAfterAck = append(r.fanoutAfterAck, max(0, a.at.Sub(a.m.acked)))
		}
		for _, a := range s.arrivals[phaseSustained] {
			r.sustainedLat = append(r.sustainedLat, a.at.Sub(a.m.at))
		}
	}
	l.print(r)
	return nil
}

// openAll opens every stream, openConc at a time, and fails on the first
// refusal.
func (l *loadRun) openAll(ctx context.Context) error {
	cfg := l.cfg
	for ci, c := range l.convos {
		for _, u := range c.members {
			for range cfg.devices {
				l.subs = append(l.subs, &subscriber{user: u, convo: ci, done: make(chan struct{})})
			}
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next     atomic.Int64
		opened   atomic.Int64
		firstErr error
		once     sync.Once
		wg       sync.WaitGroup
	)
	progress := time.NewTicker(2 * time.Second)
	defer progress.Stop()
	stopProgress := make(chan struct{})
	go func() {
		for {
			select {
			case <-stopProgress:
				return
			case <-progress.C:
				fmt.Fprintf(l.out, "  … %d streams open\n", opened.Load())
			}
		}
	}()
	for range cfg.openConc {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= len(l.subs) {
					return
				}
				s := l.subs[i]
				cid := l.convos[s.convo].id
				var err error
				if cfg.websocket {
					err = openWebSocket(ctx, l.dialer, l.g.base, l.client, l.ids, s, cid, l.t)
				} else {
					err = openSSE(ctx, l.dialer, l.g.base, l.ids, s, cid, l.t)
				}
				if err != nil {
					once.Do(func() { firstErr = fmt.Errorf("open stream %d of %d: %w", i+1, len(l.subs), err); cancel() })
					return
				}
				opened.Add(1)
			}
		})
	}
	wg.Wait()
	close(stopProgress)
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// open counts the streams still open.
func (l *loadRun) open() int {
	n := 0
	for _, s := range l.subs {
		if s.close != nil && !s.closed.Load() {
			n++
		}
	}
	return n
}

// closeAll closes every stream and waits (up to 10 s) for their readers.
func (l *loadRun) closeAll() {
	for _, s := range l.subs {
		if s.close != nil {
			s.close()
		}
	}
	deadline := time.After(10 * time.Second)
	for _, s := range l.subs {
		if s.close == nil {
			continue
		}
		select {
		case <-s.done:
		case <-deadline:
			return
		}
	}
}

// fanout sends cfg.messages messages into the first conversation one at a
// time, each awaited on every stream of the conversation.
func (l *loadRun) fanout(ctx context.Context, r *report) error {
	c := l.convos[0]
	want := len(c.members) * l.cfg.devices
	for i := range l.cfg.messages {
		id := fmt.Sprintf("f%d", i)
		m := l.t.expect(id, phaseFanout, want)
		m.at = time.Now()
		if err := l.send(ctx, c, id); err != nil {
			return err
		}
		m.acked = time.Now()
		r.sendLat = append(r.sendLat, m.acked.Sub(m.at))
		select {
		case <-m.done:
		case <-time.After(10 * time.Second):
			r.fanoutMissed += int(int64(want) - m.got.Load())
		case <-ctx.Done():
			return ctx.Err()
		}
		time.Sleep(l.cfg.interval)
	}
	return nil
}

// sustain sends into every conversation from cfg.senders goroutines for
// cfg.sustained, then waits for the deliveries to drain.
func (l *loadRun) sustain(ctx context.Context, r *report) error {
	cfg := l.cfg
	want := cfg.members * cfg.devices
	// The phase ends by time, but a send in flight completes: cancelling
	// it could leave a message stored and delivered but not counted.
	end := time.Now().Add(cfg.sustained)
	var (
		wg   sync.WaitGroup
		sent atomic.Int64
		errs = make(chan error, cfg.senders)
		msgs = make([][]*sentMessage, cfg.senders)
	)
	recv0 := l.t.received.Load()
	start := time.Now()
	for w := range cfg.senders {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(end) {
				n := sent.Add(1)
				c := l.convos[int(n)%len(l.convos)]
				id := fmt.Sprintf("s%d", n)
				m := l.t.expect(id, phaseSustained, want)
				m.at = time.Now()
				if err := l.send(ctx, c, id); err != nil {
					errs <- err
					return
				}
				m.acked = time.Now()
				msgs[w] = append(msgs[w], m)
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	// Wait for the deliveries of what was sent.
	deadline := time.After(30 * time.Second)
	for _, list := range msgs {
		for _, m := range list {
			select {
			case <-m.done:
			case <-deadline:
			}
		}
	}
	r.sustainedElapsed = time.Since(start)
	r.sustainedEvents = l.t.received.Load() - recv0
	r.sustainedSent = sent.Load()
	r.sustainedExpected = r.sustainedSent * int64(want)
	return nil
}

// send posts one application message to c from its first member.
func (l *loadRun) send(ctx context.Context, c convo, msgID string) error {
	ct, err := applicationMessage(c.id, messageSize)
	if err != nil {
		return err
	}
	tok, err := l.ids.token(l.ids.did(c.members[0]), nsidSend)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]any{
		"convoId": c.id, "msgId": msgID, "epoch": 0, "paddedSize": messageSize,
		"ciphertext": map[string]string{"$bytes": base64.RawStdEncoding.EncodeToString(ct)},
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.g.base+"/xrpc/"+nsidSend, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("sendMessage request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := l.client.Do(req)
	if err != nil {
		return fmt.Errorf("sendMessage: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("sendMessage: %s: %s", resp.Status, b)
	}
	return nil
}

// applicationMessage is an MLSMessage carrying a PrivateMessage of group
// groupHex at epoch 0, exactly size bytes long. The server checks its
// framing, group and epoch, not its (random-free) content.
func applicationMessage(groupHex string, size int) ([]byte, error) {
	gid, err := hex.DecodeString(groupHex)
	if err != nil {
		return nil, fmt.Errorf("group id: %w", err)
	}
	pm := &mlswire.PrivateMessage{GroupID: gid, Epoch: 0, ContentType: mlswire.ContentTypeApplication, EncryptedSenderData: make([]byte, 16)}
	msg := &mlswire.Message{Version: mlswire.ProtocolVersionMLS10, WireFormat: mlswire.WireFormatPrivateMessage, PrivateMessage: pm}
	empty, err := mlswire.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("frame message: %w", err)
	}
	// The ciphertext's length prefix grows with it: try the sizes around.
	for extra := 0; extra <= 4; extra++ {
		if n := size - len(empty) - extra; n >= 0 {
			pm.Ciphertext = make([]byte, n)
			if b, err := mlswire.Marshal(msg); err == nil && len(b) == size {
				return b, nil
			}
		}
	}
	return nil, fmt.Errorf("cannot frame a %d-byte message", size)
}

// saveProfiles saves the server's heap and goroutine profiles, named
// after the moment.
func (l *loadRun) saveProfiles(ctx context.Context, when string) error {
	if err := os.MkdirAll(l.cfg.profileDir, 0o755); err != nil {
		return fmt.Errorf("profile dir: %w", err)
	}
	if err := l.fetch(ctx, "/debug/pprof/heap", when+"-heap.pprof"); err != nil {
		return err
	}
	// The text form ends with runtime.MemStats: stacks, heap, GC figures.
	if err := l.fetch(ctx, "/debug/pprof/heap?debug=1", when+"-heap.txt"); err != nil {
		return err
	}
	return l.fetch(ctx, "/debug/pprof/goroutine", when+"-goroutine.pprof")
}

// fetch saves an admin endpoint's answer in the profile dir.
func (l *loadRun) fetch(ctx context.Context, path, name string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.g.adminBase+path, nil)
	if err != nil {
		return fmt.Errorf("profile request: %w", err)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Minute}).Do(req)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch %s: %s", path, resp.Status)
	}
	f, err := os.Create(filepath.Join(l.cfg.profileDir, name))
	if err != nil {
		return fmt.Errorf("create profile file: %w", err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("save %s: %w", name, err)
	}
	return f.Close()
}

// numGC reads the server's completed GC cycles from the runtime.MemStats
// the admin endpoint's heap profile ends with.
func (l *loadRun) numGC(ctx context.Context) (int64, error) {
	b, err := l.memStats(ctx)
	if err != nil {
		return 0, err
	}
	return parseMemStat(b, "NumGC")
}

// memory reads the server's goroutine stacks and heap in use (MemStats
// StackInuse and HeapInuse).
func (l *loadRun) memory(ctx context.Context) (stacks, heap int64, err error) {
	b, err := l.memStats(ctx)
	if err != nil {
		return 0, 0, err
	}
	if stacks, err = parseMemStat(b, "Stack"); err != nil {
		return 0, 0, err
	}
	heap, err = parseMemStat(b, "HeapInuse")
	return stacks, heap, err
}

// memStats fetches the admin endpoint's heap profile in text form, which
// ends with runtime.MemStats.
func (l *loadRun) memStats(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.g.adminBase+"/debug/pprof/heap?debug=1", nil)
	if err != nil {
		return nil, fmt.Errorf("heap request: %w", err)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch heap profile: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read heap profile: %w", err)
	}
	return b, nil
}

// countFDs counts the open descriptors of process pid (-1 if unreadable).
func countFDs(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

func (l *loadRun) print(r report) {
	cfg := l.cfg
	out := l.out
	transport := "SSE"
	if cfg.websocket {
		transport = "WebSocket"
	}
	perConn := int64(0)
	if r.held > 0 {
		perConn = (r.rssHeld - r.rssBefore) / int64(r.held)
	}
	fmt.Fprintf(out, "\n== cairn-load: %s, %s, %d conversations × %d members × %d streams, GOMAXPROCS(tool)=%d, %d CPUs\n",
		transport, cfg.storeKind, len(l.convos), cfg.members, cfg.devices, runtime.GOMAXPROCS(0), runtime.NumCPU())
	fmt.Fprintf(out, "connections held        %d of %d (opened in %s; server holds %d descriptors)\n", r.held, r.wanted, r.openTime.Round(time.Millisecond), r.serverFDs)
	fmt.Fprintf(out, "server RSS              %s before, %s with the streams open\n", fmtBytes(r.rssBefore), fmtBytes(r.rssHeld))
	fmt.Fprintf(out, "RSS per connection      %s\n", fmtBytes(perConn))
	if r.held > 0 && r.stacksBefore >= 0 && r.stacksHeld >= 0 {
		fmt.Fprintf(out, "  of which, per stream  stacks %s, heap in use %s (MemStats, held minus before; the heap counts garbage not yet collected)\n",
			fmtBytes((r.stacksHeld-r.stacksBefore)/int64(r.held)), fmtBytes((r.heapHeld-r.heapBefore)/int64(r.held)))
	}
	fmt.Fprintf(out, "load average            %s at the start, %s with the streams open\n", r.loadStart, r.loadHeld)
	want := len(l.convos[0].members) * cfg.devices
	fmt.Fprintf(out, "fan-out                 %d messages × %d streams, one at a time: %d deliveries, %d missing\n",
		cfg.messages, want, len(r.fanout), r.fanoutMissed)
	if len(r.fanout) > 0 {
		fmt.Fprintf(out, "fan-out latency         p50 %s  p99 %s  max %s (send start to arrival)\n",
			fmtMS(percentile(r.fanout, 50)), fmtMS(percentile(r.fanout, 99)), fmtMS(percentile(r.fanout, 100)))
		fmt.Fprintf(out, "  after the send's ack  p50 %s  p99 %s (arrival minus sendMessage's response)\n",
			fmtMS(percentile(r.fanoutAfterAck, 50)), fmtMS(percentile(r.fanoutAfterAck, 99)))
		fmt.Fprintf(out, "sendMessage latency     p50 %s  p99 %s  max %s\n", fmtMS(percentile(r.sendLat, 50)), fmtMS(percentile(r.sendLat, 99)), fmtMS(percentile(r.sendLat, 100)))
		fmt.Fprintf(out, "server CPU per fan-out  %s (%d garbage collections during the fan-outs)\n",
			fmtMS(r.serverCPUFanout/time.Duration(max(1, cfg.messages))), r.gcFanout)
	}
	if cfg.sustained > 0 && r.sustainedElapsed > 0 {
		secs := r.sustainedElapsed.Seconds()
		fmt.Fprintf(out, "sustained               %d senders, %s: %d messages (%.0f/s), %d of %d deliveries\n",
			cfg.senders, cfg.sustained, r.sustainedSent, float64(r.sustainedSent)/cfg.sustained.Seconds(), r.sustainedEvents, r.sustainedExpected)
		fmt.Fprintf(out, "events/s delivered      %.0f (over %s including the drain; server CPU %s)\n",
			float64(r.sustainedEvents)/secs, r.sustainedElapsed.Round(time.Millisecond), r.serverCPUSustained)
		if len(r.sustainedLat) > 0 {
			fmt.Fprintf(out, "sustained latency       p50 %s  p99 %s\n", fmtMS(percentile(r.sustainedLat, 50)), fmtMS(percentile(r.sustainedLat, 99)))
		}
	}
	var verdicts []string
	if cfg.subscribers >= 10000 {
		verdicts = append(verdicts, verdict(r.held >= 10000 && perConn <= 32<<10, "10,000 streams at ≤ 32 KiB RSS each"))
	}
	if want >= 1000 && len(r.fanout) > 0 {
		verdicts = append(verdicts, verdict(r.fanoutMissed == 0 && percentile(r.fanout, 99) < 100*time.Millisecond, "1,000-member fan-out p99 < 100 ms"))
	}
	if len(verdicts) > 0 {
		fmt.Fprintf(out, "targets                 %s\n", strings.Join(verdicts, "; "))
	}
}

func verdict(ok bool, what string) string {
	if ok {
		return "met: " + what
	}
	return "MISSED: " + what
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

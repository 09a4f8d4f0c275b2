package backup

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// TestScheduleRunsOnOneNode: two nodes share a PostgreSQL store and a
// target; when a backup is due both try at once and exactly one archive
// is written, none until the interval has passed, and Keep prunes.
func TestScheduleRunsOnOneNode(t *testing.T) {
	ctx := context.Background()
	cfg := backends["postgres"](t)
	seed(t, cfg, "", 5)
	target := Dir{Path: t.TempDir()}
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	var audited []string
	var nodes []*Schedule
	for range 2 {
		b := openStore(t, cfg)
		nodes = append(nodes, &Schedule{
			Runner: &Runner{Target: target, Options: Options{Store: cfg, Key: testKey, Now: clock}, Keep: 1,
				Audit: func(_ context.Context, ev, _ string, md map[string]any) error {
					mu.Lock()
					defer mu.Unlock()
					audited = append(audited, ev+" "+md["archive"].(string))
					return nil
				}},
			Locker: b, Interval: 24 * time.Hour, Now: clock,
		})
	}
	runBoth := func() {
		var wg sync.WaitGroup
		for _, n := range nodes {
			wg.Go(func() {
				if _, err := n.RunOnce(ctx); err != nil {
					t.Errorf("run: %v", err)
				}
			})
		}
		wg.Wait()
	}
	runBoth()
	as, _ := target.List(ctx)
	if len(as) != 1 || len(audited) != 1 || !strings.HasPrefix(audited[0], "backup.create cairn-") {
		t.Fatalf("first due run: archives %v, audited %v; want one of each", as, audited)
	}
	runBoth()
	if as2, _ := target.List(ctx); len(as2) != 1 {
		t.Fatalf("not due yet, but archives are %v", as2)
	}
	if wait, _ := nodes[0].RunOnce(ctx); wait < 23*time.Hour {
		t.Errorf("next due in %v, want about 24h", wait)
	}
	mu.Lock()
	now = now.Add(25 * time.Hour)
	mu.Unlock()
	runBoth()
	as2, _ := target.List(ctx)
	if len(as2) != 1 || as2[0].Name == as[0].Name || len(audited) != 2 {
		t.Errorf("after a day: archives %v (keep 1), audited %v", as2, audited)
	}
	if last, ok, err := Last(ctx, target); err != nil || !ok || last.Name != as2[0].Name {
		t.Errorf("Last = %v %v %v", last, ok, err)
	}
}

// TestHandler drives the operator API's backup routes.
func TestHandler(t *testing.T) {
	cfg := backends["sqlite"](t)
	seed(t, cfg, "", 5)
	target := Dir{Path: t.TempDir()}
	done := make(chan Finished, 1)
	r := &Runner{Target: target, Options: Options{Store: cfg, Key: testKey}, OnFinish: func(f Finished) { done <- f }}
	h := &Handler{Runner: r, Actor: func(*http.Request) string { return "op" }}
	mux := http.NewServeMux()
	for pattern, fn := range h.Routes() {
		method, path, _ := strings.Cut(pattern, " ")
		mux.HandleFunc(method+" /operator/v1/"+path, fn)
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()
	call := func(method, path string) (int, map[string]any) {
		req, _ := http.NewRequest(method, srv.URL+"/operator/v1/"+path, nil)
		resp, err := http.DefaultClient.Do(req)
		testenv.Must(t, err, method+" "+path)
		defer resp.Body.Close()
		var v map[string]any
		testenv.Must(t, json.NewDecoder(resp.Body).Decode(&v), "decode")
		return resp.StatusCode, v
	}
	if code, v := call("POST", "backups"); code != http.StatusAccepted || v["running"] != true {
		t.Fatalf("start: %d %v", code, v)
	}
	f := <-done
	if f.Error != "" || f.Archive == "" {
		t.Fatalf("backup finished with %+v", f)
	}
	code, v := call("GET", "backups/running")
	if code != 200 || v["running"] != false || v["last"].(map[string]any)["archive"] != f.Archive {
		t.Errorf("state: %d %v", code, v)
	}
	code, v = call("GET", "backups")
	if as := v["archives"].([]any); code != 200 || len(as) != 1 || as[0].(map[string]any)["name"] != f.Archive {
		t.Errorf("list: %d %v", code, v)
	}
	r.mu.Lock()
	r.state.Running = true
	r.mu.Unlock()
	if code, v := call("POST", "backups"); code != http.StatusConflict || v["error"] != "BackupRunning" {
		t.Errorf("start while running: %d %v", code, v)
	}
}

package deploy

import (
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// otlpLogsReceiver is an in-process stand-in for Loki's native OTLP
// endpoint (POST /otlp/v1/logs, protobuf, gzip as the collector sends it
// by default): it keeps every log record with its resource's attributes.
type otlpLogsReceiver struct {
	mu      sync.Mutex
	records []shippedRecord
	tenants map[string]bool
	refused []string
}

type shippedRecord struct {
	resource map[string]string
	record   *logspb.LogRecord
}

func (o *otlpLogsReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/otlp/v1/logs" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		o.refuse(w, fmt.Sprintf("%s %s (%s)", r.Method, r.URL.Path, r.Header.Get("Content-Type")))
		return
	}
	body := io.Reader(r.Body)
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			o.refuse(w, "bad gzip: "+err.Error())
			return
		}
		body = zr
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		o.refuse(w, "read: "+err.Error())
		return
	}
	var req collogspb.ExportLogsServiceRequest
	if err := proto.Unmarshal(raw, &req); err != nil {
		o.refuse(w, "not an ExportLogsServiceRequest: "+err.Error())
		return
	}
	o.mu.Lock()
	o.tenants[r.Header.Get("X-Scope-OrgID")] = true
	for _, rl := range req.GetResourceLogs() {
		res := stringAttrs(rl.GetResource().GetAttributes())
		for _, sl := range rl.GetScopeLogs() {
			for _, rec := range sl.GetLogRecords() {
				o.records = append(o.records, shippedRecord{resource: res, record: rec})
			}
		}
	}
	o.mu.Unlock()
	out, _ := proto.Marshal(&collogspb.ExportLogsServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

func (o *otlpLogsReceiver) refuse(w http.ResponseWriter, why string) {
	o.mu.Lock()
	o.refused = append(o.refused, why)
	o.mu.Unlock()
	http.Error(w, why, http.StatusBadRequest)
}

func (o *otlpLogsReceiver) received() []shippedRecord {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]shippedRecord(nil), o.records...)
}

// stringAttrs flattens OTLP attributes to their string form.
func stringAttrs(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[kv.GetKey()] = kv.GetValue().GetStringValue()
		if _, ok := kv.GetValue().GetValue().(*commonpb.AnyValue_StringValue); !ok {
			m[kv.GetKey()] = kv.GetValue().String()
		}
	}
	return m
}

// collectorSources are the files whose content names a collector build:
// the Makefile's otelcol target hashes the same files in the same order.
var collectorSources = []string{"go.mod", "go.sum", "main.go"}

// otelcolBinary returns the collector built from tools/otelcol-cairn,
// cached under /var/cache/cairn-ci by the hash of its sources (`make
// otelcol` puts it there; this builds it the same way when it is
// missing, several minutes on a fresh machine).
func otelcolBinary(t *testing.T) string {
	t.Helper()
	src, err := filepath.Abs(filepath.Join("..", "tools", "otelcol-cairn"))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	for _, f := range collectorSources {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
	}
	cacheDir := os.Getenv("CAIRN_CI_CACHE")
	if cacheDir == "" {
		cacheDir = "/var/cache/cairn-ci"
	}
	bin := filepath.Join(cacheDir, "otelcol-cairn-"+hex.EncodeToString(h.Sum(nil))[:12])
	testenv.LockHost(t, "otelcol-build")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	tmp := bin + ".tmp"
	cmd := exec.Command(testenv.Tool(t, "go"), "build", "-trimpath", "-o", tmp, ".")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		t.Fatalf("building tools/otelcol-cairn: %v\n%s", err, tail(out, 30))
	}
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatal(err)
	}
	t.Logf("otelcol: built and cached %s in %s", bin, time.Since(start).Round(time.Second))
	return bin
}

// TestCollectorShipsTheLogsToLoki runs the OpenTelemetry Collector built
// from tools/otelcol-cairn with deploy/otelcol/cairn-loki.yaml over the
// log lines the real gateway wrote while driven through every feature,
// plus a line that is not JSON, and checks what reaches an in-process
// stand-in for Loki's OTLP endpoint: one record per line, in order, with
// the line as its body untouched, service.name cairn-caddy, the line's
// level as its severity and time as its timestamp, only the bounded
// attributes logger, msg and request_id (every access line with its
// request ID), no identity anywhere, and nothing from a file outside the
// configured glob. It then restarts the collector and appends one line:
// only that line is shipped, since the offsets are kept.
func TestCollectorShipsTheLogsToLoki(t *testing.T) {
	bin := otelcolBinary(t)
	conf, err := filepath.Abs("otelcol/cairn-loki.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for line := range strings.Lines(driveOnce(t).logs) {
		if line = strings.TrimRight(line, "\n"); strings.TrimSpace(line) != "" {
			lines = append(lines, line)
		}
	}
	const notJSON = "goroutine 1 [running]:"
	lines = append(lines, notJSON)

	loki := &otlpLogsReceiver{tenants: map[string]bool{}}
	srv := httptest.NewServer(loki)
	defer srv.Close()
	dir := t.TempDir()
	logFile := filepath.Join(dir, "cairn.log")
	if err := os.WriteFile(logFile, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "other.txt"), []byte(`{"level":"info","msg":"not cairn's"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const tenant = "cairn-test"
	env := append(os.Environ(),
		"CAIRN_LOG_FILES="+filepath.Join(dir, "*.log"),
		"CAIRN_OTELCOL_STATE="+filepath.Join(dir, "state"),
		"CAIRN_LOKI_OTLP="+srv.URL+"/otlp",
		"CAIRN_LOKI_TENANT="+tenant,
	)
	validate := exec.Command(bin, "validate", "--config", conf)
	validate.Env = env
	if out, err := validate.CombinedOutput(); err != nil {
		t.Fatalf("otelcol validate: %v\n%s", err, out)
	}

	run := func() (stop func(), out *testenv.SyncBuffer) {
		out = &testenv.SyncBuffer{}
		cmd := exec.Command(bin, "--config", conf)
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = out, out
		proc, err := testenv.StartProcess(t, cmd)
		if err != nil {
			t.Fatal(err)
		}
		return func() { proc.Stop(testenv.StopGrace) }, out
	}
	waitFor := func(n int, out *testenv.SyncBuffer) []shippedRecord {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for len(loki.received()) < n && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		got := loki.received()
		if len(got) != n {
			t.Fatalf("Loki received %d records, want %d\nrefused: %v\ncollector: %s", len(got), n, loki.refused, tail([]byte(out.String()), 40))
		}
		return got
	}

	stop, out := run()
	got := waitFor(len(lines), out)
	requests := 0
	for i, r := range got {
		rec := r.record
		if want := map[string]string{"service.name": "cairn-caddy"}; fmt.Sprint(r.resource) != fmt.Sprint(want) {
			t.Errorf("record %d: resource %v, want only %v", i, r.resource, want)
		}
		body := rec.GetBody().GetStringValue()
		if body != lines[i] {
			t.Errorf("record %d: body\n%.300s\nwant the line\n%.300s", i, body, lines[i])
			continue
		}
		attrs := stringAttrs(rec.GetAttributes())
		for k, v := range attrs {
			switch k {
			case "logger", "msg", "request_id":
			default:
				t.Errorf("record %d: attribute %s=%.100s: only logger, msg and request_id may be lifted out of the line", i, k, v)
			}
			for _, secret := range []string{aliceDID, groupID, "127.0.0.1"} {
				if strings.Contains(v, secret) {
					t.Errorf("record %d: attribute %s carries %q", i, k, secret)
				}
			}
		}
		for _, secret := range []string{aliceDID, groupID} {
			if strings.Contains(body, secret) {
				t.Errorf("record %d: the line carries %q: %.300s", i, secret, body)
			}
		}
		if body == notJSON {
			if len(attrs) != 0 || rec.GetSeverityText() != "" {
				t.Errorf("the line that is not JSON got attributes %v, severity %q", attrs, rec.GetSeverityText())
			}
			continue
		}
		var entry map[string]any
		if err := json.Unmarshal([]byte(body), &entry); err != nil {
			t.Errorf("record %d: %v", i, err)
			continue
		}
		if level, _ := entry["level"].(string); rec.GetSeverityText() != level || rec.GetSeverityNumber() == logspb.SeverityNumber_SEVERITY_NUMBER_UNSPECIFIED {
			t.Errorf("record %d: severity %q (%v), want the line's level %q", i, rec.GetSeverityText(), rec.GetSeverityNumber(), level)
		}
		if ts, _ := entry["ts"].(float64); math.Abs(float64(rec.GetTimeUnixNano())-ts*1e9) > 1e3 {
			t.Errorf("record %d: time %d ns, want the line's ts %f s", i, rec.GetTimeUnixNano(), ts)
		}
		for _, k := range []string{"logger", "msg", "request_id"} {
			if v, ok := entry[k].(string); ok && attrs[k] != v {
				t.Errorf("record %d: attribute %s = %q, want the line's %q", i, k, attrs[k], v)
			}
		}
		if entry["msg"] == "handled request" {
			requests++
			if attrs["request_id"] == "" {
				t.Errorf("record %d: an access line shipped without its request_id attribute", i)
			}
		}
	}
	if requests < 5 {
		t.Errorf("only %d access lines shipped", requests)
	}
	if !loki.tenants[tenant] || len(loki.tenants) != 1 {
		t.Errorf("X-Scope-OrgID sent: %v, want only %q", loki.tenants, tenant)
	}

	// A restart resumes from the kept offsets.
	stop()
	stop, out = run()
	defer stop()
	const later = `{"level":"warn","ts":1764500000.5,"logger":"cairn","msg":"after the restart"}`
	f, err := os.OpenFile(logFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(later + "\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	got = waitFor(len(lines)+1, out)
	if body := got[len(lines)].record.GetBody().GetStringValue(); body != later {
		t.Errorf("after the restart the collector shipped %.200s, want only the appended line", body)
	}
}

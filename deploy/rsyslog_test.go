package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// bulkReceiver is an in-process stand-in for Elasticsearch's bulk API: it
// keeps each document with the index its action line named.
type bulkReceiver struct {
	mu   sync.Mutex
	docs []bulkDoc
}

type bulkDoc struct {
	index string
	doc   map[string]any
}

func (b *bulkReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if r.Method == http.MethodGet && r.URL.Path == "/" {
		io.WriteString(w, `{"version":{"number":"8.11.0"},"tagline":"You Know, for Search"}`)
		return
	}
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/_bulk") {
		http.Error(w, `{"error":"not the bulk API"}`, http.StatusNotFound)
		return
	}
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var items []string
	for sc.Scan() {
		var action map[string]struct {
			Index string `json:"_index"`
		}
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		if err := json.Unmarshal(sc.Bytes(), &action); err != nil || !sc.Scan() {
			http.Error(w, `{"error":"bad action line"}`, http.StatusBadRequest)
			return
		}
		var doc map[string]any
		if err := json.Unmarshal(sc.Bytes(), &doc); err != nil {
			http.Error(w, `{"error":"bad document"}`, http.StatusBadRequest)
			return
		}
		b.mu.Lock()
		b.docs = append(b.docs, bulkDoc{index: action["index"].Index, doc: doc})
		b.mu.Unlock()
		items = append(items, `{"index":{"status":201}}`)
	}
	fmt.Fprintf(w, `{"took":1,"errors":false,"items":[%s]}`, strings.Join(items, ","))
}

func (b *bulkReceiver) received() []bulkDoc {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]bulkDoc(nil), b.docs...)
}

// TestRsyslogShipsTheLogsToElasticsearch runs Debian's rsyslogd with
// deploy/rsyslog/cairn-elasticsearch.conf over the log lines the real
// gateway wrote while driven through every feature (read from a file
// tagged cairn-caddy, as journald hands them over under that program
// name), beside lines of another program, and checks what reaches an
// in-process Elasticsearch bulk endpoint: every cairn line, as the same
// JSON object, in a cairn-YYYY.MM.DD index, and nothing of the other
// program.
func TestRsyslogShipsTheLogsToElasticsearch(t *testing.T) {
	rsyslogd := testenv.Tool(t, "rsyslogd")
	var want []map[string]any
	var cairnLines strings.Builder
	for line := range strings.Lines(driveOnce(t).logs) {
		var entry map[string]any
		if json.Unmarshal([]byte(line), &entry) != nil {
			continue
		}
		want = append(want, entry)
		cairnLines.WriteString(line)
	}

	es := &bulkReceiver{}
	srv := httptest.NewServer(es)
	defer srv.Close()

	dir := t.TempDir()
	conf, err := filepath.Abs("rsyslog/cairn-elasticsearch.conf")
	if err != nil {
		t.Fatal(err)
	}
	cairnLog, otherLog := filepath.Join(dir, "cairn.log"), filepath.Join(dir, "other.log")
	if err := os.WriteFile(cairnLog, []byte(cairnLines.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(otherLog, []byte(`{"level":"info","msg":"not cairn's"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	main := filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(main, fmt.Appendf(nil, `global(workDirectory=%q maxMessageSize="64k")
module(load="imfile")
include(file=%q)
input(type="imfile" file=%q tag="cairn-caddy:")
input(type="imfile" file=%q tag="other:")
`, dir, conf, cairnLog, otherLog), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "CAIRN_ELASTICSEARCH_URL="+srv.URL)
	check := exec.Command(rsyslogd, "-N1", "-f", main)
	check.Env = env
	if out, err := check.CombinedOutput(); err != nil {
		t.Fatalf("rsyslogd -N1 (config check): %v\n%s", err, out)
	}
	cmd := exec.Command(rsyslogd, "-n", "-f", main, "-i", filepath.Join(dir, "rsyslogd.pid"))
	cmd.Env = env
	var out testenv.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	proc, err := testenv.StartProcess(t, cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Kill()

	deadline := time.Now().Add(20 * time.Second)
	for len(es.received()) < len(want) && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	got := es.received()
	if len(got) != len(want) {
		t.Fatalf("Elasticsearch received %d documents, want the %d cairn lines\nrsyslogd: %s", len(got), len(want), out.String())
	}
	index := regexp.MustCompile(`^cairn-\d{4}\.\d{2}\.\d{2}$`)
	for i, d := range got {
		if !index.MatchString(d.index) {
			t.Errorf("document %d went to index %q, want cairn-YYYY.MM.DD", i, d.index)
		}
		if !reflect.DeepEqual(d.doc, want[i]) {
			t.Errorf("document %d is\n%v\nwant the log line\n%v", i, d.doc, want[i])
		}
	}
}

package deploy

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// vectorConfig is the part of Vector's configuration the test reads.
type vectorConfig struct {
	Sources    map[string]map[string]any `yaml:"sources"`
	Transforms map[string]struct {
		Type   string   `yaml:"type"`
		Inputs []string `yaml:"inputs"`
		Source string   `yaml:"source"`
	} `yaml:"transforms"`
	Sinks map[string]struct {
		Type     string            `yaml:"type"`
		Inputs   []string          `yaml:"inputs"`
		Labels   map[string]string `yaml:"labels"`
		Endpoint string            `yaml:"endpoint"`
		Bulk     struct {
			Index string `yaml:"index"`
		} `yaml:"bulk"`
	} `yaml:"sinks"`
}

// TestVectorConfigFitsTheLogs checks deploy/vector/vector.yaml as far as
// it can be checked without Vector, which Debian does not package: it
// parses, every component's inputs exist, the journald source reads the
// unit deploy/systemd installs, both sinks are there, Loki gets only the
// bounded labels, and every field the remap and the label templates read
// is in the log lines the real gateway wrote while driven through every
// feature. The request lines carry request_id at the top level, as the
// Loki and Elasticsearch queries in docs/observability.md expect.
func TestVectorConfigFitsTheLogs(t *testing.T) {
	raw, err := os.ReadFile("vector/vector.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg vectorConfig
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("vector.yaml: %v", err)
	}
	ids := map[string]bool{}
	for id := range cfg.Sources {
		ids[id] = true
	}
	for id := range cfg.Transforms {
		ids[id] = true
	}
	for id, tr := range cfg.Transforms {
		checkInputs(t, "transform "+id, tr.Inputs, ids)
	}
	for id, s := range cfg.Sinks {
		checkInputs(t, "sink "+id, s.Inputs, ids)
	}
	units, _ := cfg.Sources["cairn_journal"]["include_units"].([]any)
	if cfg.Sources["cairn_journal"]["type"] != "journald" || !slices.Contains(units, any("cairn-caddy.service")) {
		t.Errorf("the journald source does not read cairn-caddy.service: %v", cfg.Sources["cairn_journal"])
	}
	if _, err := os.Stat("systemd/cairn-caddy.service"); err != nil {
		t.Errorf("the unit the source reads is not in deploy/systemd: %v", err)
	}
	loki, es := cfg.Sinks["loki"], cfg.Sinks["elasticsearch"]
	if loki.Type != "loki" || es.Type != "elasticsearch" || es.Bulk.Index == "" {
		t.Fatalf("want a loki and an elasticsearch sink with an index: %+v", cfg.Sinks)
	}
	var labelFields []string
	template := regexp.MustCompile(`^\{\{ *([a-z_]+) *\}\}$`)
	for name, v := range loki.Labels {
		if !slices.Contains([]string{"job", "level", "logger"}, name) {
			t.Errorf("Loki label %q: labels must stay bounded (job, level, logger)", name)
		}
		if m := template.FindStringSubmatch(v); m != nil {
			labelFields = append(labelFields, m[1])
		}
	}
	remap := cfg.Transforms["cairn_json"].Source
	for _, want := range []string{"parse_json(.message)", ".level", ".logger"} {
		if !strings.Contains(remap, want) {
			t.Errorf("the remap does not read %s:\n%s", want, remap)
		}
	}

	// The log lines the gateway wrote are what journald hands Vector as
	// .message.
	logs := driveOnce(t).logs
	lines, requests := 0, 0
	for line := range strings.Lines(logs) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Errorf("a log line is not a JSON object (parse_json would leave it unparsed): %.200s", line)
			continue
		}
		lines++
		if _, ok := entry["level"].(string); !ok {
			t.Errorf("a log line has no string level: %.200s", line)
		}
		if l, ok := entry["logger"]; ok {
			if _, ok := l.(string); !ok {
				t.Errorf("a log line's logger is not a string: %.200s", line)
			}
		}
		if entry["msg"] == "handled request" {
			requests++
			if id, _ := entry["request_id"].(string); id == "" {
				t.Errorf("an access log line has no top-level request_id: %.200s", line)
			}
		}
	}
	if lines < 10 || requests < 5 {
		t.Fatalf("only %d log lines, %d access log lines, from the driven gateway", lines, requests)
	}
	for _, f := range labelFields {
		if f != "level" && f != "logger" {
			t.Errorf("Loki label template reads %q, which the remap does not guarantee", f)
		}
	}
}

func checkInputs(t *testing.T, what string, inputs []string, ids map[string]bool) {
	t.Helper()
	if len(inputs) == 0 {
		t.Errorf("%s has no inputs", what)
	}
	for _, in := range inputs {
		if !ids[in] {
			t.Errorf("%s reads %q, which is no source or transform", what, in)
		}
	}
}

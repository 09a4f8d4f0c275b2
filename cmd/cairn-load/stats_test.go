package main

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // unsorted on purpose
	}
	for _, tc := range []struct {
		name string
		d    []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one sample", ms(7), 99, 7 * time.Millisecond},
		{"median of odd count", ms(3, 1, 2), 50, 2 * time.Millisecond},
		{"median of even count", ms(4, 1, 3, 2), 50, 2 * time.Millisecond},
		{"p99 of 1..100", ms(hundred...), 99, 99 * time.Millisecond},
		{"p50 of 1..100", ms(hundred...), 50, 50 * time.Millisecond},
		{"max", ms(5, 9, 1), 100, 9 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(tc.d, tc.p); got != tc.want {
				t.Errorf("percentile(p%v) = %v, want %v", tc.p, got, tc.want)
			}
		})
	}
}

func TestParseVmRSS(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  string
		want    int64
		wantErr bool
	}{
		{"proc status", "Name:\tcairn-caddy\nVmPeak:\t 2000000 kB\nVmRSS:\t  123456 kB\nRssAnon:\t  100000 kB\n", 123456 * 1024, false},
		{"no VmRSS (a kernel thread)", "Name:\tkthreadd\nState:\tS (sleeping)\n", 0, true},
		{"bad unit", "VmRSS:\t 12 MB\n", 0, true},
		{"bad number", "VmRSS:\t 1x2 kB\n", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseVmRSS([]byte(tc.status))
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("parseVmRSS = %d, %v; want %d, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestParseMemStat(t *testing.T) {
	profile := "heap profile: 1: 2 [3: 4] @ heap/1048576\n\n# runtime.MemStats\n# Alloc = 123\n# HeapInuse = 4096\n# Stack = 65536 / 65536\n# NumGC = 17\n# NumForcedGC = 0\n"
	for name, want := range map[string]int64{"NumGC": 17, "HeapInuse": 4096, "Stack": 65536} {
		if n, err := parseMemStat([]byte(profile), name); err != nil || n != want {
			t.Errorf("parseMemStat(%s) = %d, %v; want %d", name, n, err, want)
		}
	}
	if _, err := parseMemStat([]byte("heap profile: 1: 2\n"), "NumGC"); err == nil {
		t.Error("a profile without MemStats parsed")
	}
	if _, err := parseMemStat([]byte("# NumGC = 3.5\n"), "NumGC"); err == nil {
		t.Error("a fractional NumGC parsed")
	}
}

func TestParseStatCPU(t *testing.T) {
	// The command name may hold spaces and parentheses.
	stat := "4242 (cairn (x) caddy) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 100 1000 200 18446744073709551615\n"
	got, err := parseStatCPU([]byte(stat))
	if err != nil || got != 3*time.Second {
		t.Fatalf("parseStatCPU = %v, %v; want 3s (300 ticks)", got, err)
	}
	if _, err := parseStatCPU([]byte("4242 cairn S 1")); err == nil {
		t.Error("a stat line without a command name parsed")
	}
}

func TestMessageID(t *testing.T) {
	data := []byte(`{"event":{"$type":"blue.catbird.mls.streamConvoEvents#messageEvent","cursor":"42","message":{"id":"f17","convoId":"ab"}}}`)
	if id, ok := messageID(data); !ok || id != "f17" {
		t.Errorf("messageID = %q, %v; want f17", id, ok)
	}
	if _, ok := messageID([]byte(`{"event":{"$type":"blue.catbird.mls.streamConvoEvents#infoEvent","info":"x"}}`)); ok {
		t.Error("an infoEvent yielded a message id")
	}
}

func TestDIDsAreValidPLC(t *testing.T) {
	ids, err := newIdentities()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, i := range []int{0, 1, 999, 10_000, 1 << 40} {
		d := ids.did(i)
		id := d[len("did:plc:"):]
		if len(id) != 24 {
			t.Fatalf("%s: identifier of %d characters, want 24", d, len(id))
		}
		for _, c := range id {
			if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
				t.Fatalf("%s: %q is outside did:plc's alphabet", d, c)
			}
		}
		if seen[d] {
			t.Fatalf("%s minted twice", d)
		}
		seen[d] = true
	}
}

func TestParseFlagsRejectsAnUnevenSplit(t *testing.T) {
	if _, err := parseFlags([]string{"-subscribers", "1500", "-members", "1000"}, testWriter{t}); err == nil {
		t.Error("1500 subscribers in conversations of 1000 members was accepted")
	}
	c, err := parseFlags([]string{"-subscribers", "20", "-members", "10", "-devices", "2"}, testWriter{t})
	if err != nil || c.subscribers/(c.members*c.devices) != 1 {
		t.Errorf("parseFlags: %+v, %v", c, err)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func TestParsePortRange(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		err  bool
	}{
		{"32768\t60999\n", 28232, false},
		{"1024 65535", 64512, false},
		{"60999 32768", 0, true},
		{"32768", 0, true},
		{"a b", 0, true},
		{"0 70000", 0, true},
	} {
		got, err := parsePortRange([]byte(tc.in))
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("parsePortRange(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func FuzzParsePortRange(f *testing.F) {
	f.Add([]byte("32768\t60999\n"))
	f.Add([]byte("1 1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := parsePortRange(b)
		if err == nil && (n < 1 || n > 65535) {
			t.Errorf("parsePortRange(%q) = %d", b, n)
		}
	})
}

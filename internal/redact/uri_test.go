package redact

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestURIHashesAllButKeptParameters(t *testing.T) {
	h := testHasher(t, 3)
	did := "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
	keep := DefaultKeepQuery()
	for _, tc := range []struct {
		name, uri string
		secrets   []string
		keep      []string
	}{
		{"listed and unlisted", "/xrpc/blue.catbird.mls.getMessages?convoId=c0ffee42&limit=50", []string{"c0ffee42"}, []string{"limit=50", "/xrpc/blue.catbird.mls.getMessages?"}},
		{"repeated param", "/xrpc/blue.catbird.mls.getKeyPackages?dids=" + did + "&dids=did:web:alice.example", []string{did, "did:web:alice.example", "ewvi7"}, nil},
		{"escaped value", "/xrpc/x?did=did%3Aplc%3Aewvi7nxzyoun6zhxrhs64oiz", []string{"ewvi7"}, nil},
		{"a parameter no lexicon names", "/xrpc/x?deviceId=dev-91aa&whatever=abc123xyz&ticket=tkt.secret", []string{"dev-91aa", "abc123xyz", "tkt.secret"}, nil},
		{"an identity under a kept name", "/xrpc/x?limit=" + did + "&status=alice.example", []string{"ewvi7", "alice.example"}, nil},
		{"an identity as a name", "/xrpc/x?" + did + "=1&alice.example", []string{"ewvi7", "alice.example"}, nil},
		{"absolute URL", "https://gw.example/xrpc/x?convoId=c0ffee42", []string{"c0ffee42"}, []string{"https://gw.example/xrpc/x?"}},
		{"bad escape fails closed", "/xrpc/x?convoId=%zz" + did, []string{did, "ewvi7"}, []string{"/xrpc/x?[unparseable]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := h.URI(tc.uri, keep)
			for _, s := range tc.secrets {
				if strings.Contains(got, s) {
					t.Errorf("URI(%q) = %q still contains %q", tc.uri, got, s)
				}
			}
			for _, s := range tc.keep {
				if !strings.Contains(got, s) {
					t.Errorf("URI(%q) = %q lost %q", tc.uri, got, s)
				}
			}
		})
	}
}

func TestURIWithoutQueryIsUnchanged(t *testing.T) {
	h := testHasher(t, 3)
	if got := h.URI("/xrpc/blue.catbird.mls.getConvos", []string{"convoId"}); got != "/xrpc/blue.catbird.mls.getConvos" {
		t.Errorf("URI = %q", got)
	}
}

func FuzzURI(f *testing.F) {
	h, _ := New(make([]byte, MinKeySize))
	f.Add("/xrpc/x?convoId=secretvalue&limit=1")
	f.Add("/x?convoId=%zzsecretvalue")
	f.Fuzz(func(t *testing.T, uri string) {
		got := h.URI(uri, []string{"limit"})
		if strings.HasSuffix(got, "?"+Unparseable) {
			return
		}
		_, query, ok := strings.Cut(got, "?")
		if !ok {
			return
		}
		q, err := url.ParseQuery(query)
		if err != nil {
			t.Fatalf("URI(%q) = %q: output query does not parse: %v", uri, got, err)
		}
		// Every value is hashed (or empty), except a harmless limit.
		for name, vs := range q {
			for _, v := range vs {
				if v == "" || strings.HasPrefix(v, Prefix) || (name == "limit" && harmlessValue.MatchString(v)) {
					continue
				}
				t.Fatalf("URI(%q) = %q: %s value %q not hashed", uri, got, name, v)
			}
		}
	})
}

func TestHeaderHashesAllButKeptHeaders(t *testing.T) {
	h := testHasher(t, 3)
	in := http.Header{
		"Content-Type":    {"application/json"},
		"X-Request-Id":    {"req-1"},
		"X-Device-Id":     {"device-9f8e7d6c"},
		"X-Forwarded-For": {"203.0.113.7, 198.51.100.2"},
		"Forwarded":       {"for=203.0.113.7"},
		"User-Agent":      {"Catbird/1.0 (iPhone15,2)"},
		"Last-Event-Id":   {"cursor-77aa31"},
	}
	got := h.Header(in, DefaultKeepHeaders(), IPHash)
	if got.Get("Content-Type") != "application/json" || got.Get("X-Request-Id") != "req-1" {
		t.Errorf("kept headers changed: %v", got)
	}
	for _, name := range []string{"X-Device-Id", "X-Forwarded-For", "Forwarded", "User-Agent", "Last-Event-Id"} {
		if v := got.Get(name); v != h.Hash(in.Get(name)) {
			t.Errorf("%s = %q, want its hash", name, v)
		}
	}
	if in.Get("X-Device-Id") != "device-9f8e7d6c" {
		t.Error("Header modified its input")
	}
}

func TestHeaderFollowsTheIPPolicyForAddressHeaders(t *testing.T) {
	h := testHasher(t, 3)
	in := http.Header{"X-Forwarded-For": {"203.0.113.7, 2001:db8:1:2::9"}, "X-Real-Ip": {"203.0.113.7"}, "X-Device-Id": {"dev-1"}}
	for _, tc := range []struct {
		policy   IPPolicy
		xff, xri string
	}{
		{IPHash, h.Hash("203.0.113.7, 2001:db8:1:2::9"), h.Hash("203.0.113.7")},
		{IPTruncate, "203.0.113.0, 2001:db8:1::", "203.0.113.0"},
		{IPKeep, "203.0.113.7, 2001:db8:1:2::9", "203.0.113.7"},
	} {
		got := h.Header(in, nil, tc.policy)
		if got.Get("X-Forwarded-For") != tc.xff || got.Get("X-Real-Ip") != tc.xri {
			t.Errorf("%v: X-Forwarded-For %q X-Real-Ip %q, want %q %q", tc.policy, got.Get("X-Forwarded-For"), got.Get("X-Real-Ip"), tc.xff, tc.xri)
		}
		if got.Get("X-Device-Id") != h.Hash("dev-1") {
			t.Errorf("%v: a non-address header was not hashed", tc.policy)
		}
	}
}

package redact

import (
	"net/url"
	"strings"
	"testing"
)

func TestURIHashesNamedParameters(t *testing.T) {
	h := testHasher(t, 3)
	did := "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
	params := []string{"convoId", "dids", "did", "cursor", "ticket"}
	for _, tc := range []struct {
		name, uri string
		secrets   []string
		keep      []string
	}{
		{"one param", "/xrpc/blue.catbird.mls.getMessages?convoId=c0ffee42&limit=50", []string{"c0ffee42"}, []string{"limit=50", "/xrpc/blue.catbird.mls.getMessages?"}},
		{"repeated param", "/xrpc/blue.catbird.mls.getKeyPackages?dids=" + did + "&dids=did:web:alice.example", []string{did, "did:web:alice.example", "ewvi7"}, nil},
		{"escaped value", "/xrpc/x?did=did%3Aplc%3Aewvi7nxzyoun6zhxrhs64oiz", []string{"ewvi7"}, nil},
		{"cursor and ticket", "/xrpc/x?cursor=abc123xyz&ticket=tkt.secret", []string{"abc123xyz", "tkt.secret"}, nil},
		{"absolute URL", "https://gw.example/xrpc/x?convoId=c0ffee42", []string{"c0ffee42"}, []string{"https://gw.example/xrpc/x?"}},
		{"bad escape fails closed", "/xrpc/x?convoId=%zz" + did, []string{did, "ewvi7"}, []string{"/xrpc/x?[unparseable]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := h.URI(tc.uri, params)
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
		got := h.URI(uri, []string{"convoId"})
		if strings.HasSuffix(got, "?"+Unparseable) {
			return
		}
		_, query, ok := strings.Cut(got, "?")
		if !ok {
			return
		}
		q, err := url.ParseQuery(query)
		if err != nil {
			// Unparsed output is only acceptable when nothing was hashed.
			if got != uri || strings.Contains(uri, "convoId") {
				t.Fatalf("URI(%q) = %q: unparseable output that may carry a convoId", uri, got)
			}
			return
		}
		for _, v := range q["convoId"] {
			if v != "" && !strings.HasPrefix(v, Prefix) {
				t.Fatalf("URI(%q) = %q: convoId value %q not hashed", uri, got, v)
			}
		}
	})
}

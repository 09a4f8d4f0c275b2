package caddymodules

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/cairn-chat/cairn-caddy/internal/redact"
)

func TestRedactFilterCaddyfile(t *testing.T) {
	for _, tc := range []struct {
		src, kind, wantErr string
		keep               []string
	}{
		{src: "cairn_redact", kind: ""},
		{src: "cairn_redact uri", kind: RedactURI},
		{src: "cairn_redact headers {\n keep Content-Type X-Request-ID\n}", kind: RedactHeaders, keep: []string{"Content-Type", "X-Request-ID"}},
		{src: "cairn_redact {\n query convoId did\n}", wantErr: "query option is gone"},
		{src: "cairn_redact ip {\n ips truncate\n}", kind: RedactIP},
		{src: "cairn_redact ip {\n ips\n}", kind: RedactIP},
		{src: "cairn_redact {\n keep limit\n}", wantErr: "keep needs kind uri or headers"},
		{src: "cairn_redact ip {\n keep X\n}", wantErr: "keep needs kind uri or headers"},
		{src: "cairn_redact uri {\n ips keep\n}", wantErr: "ips needs kind ip or headers"},
		{src: "cairn_redact ip {\n ips mask\n}", wantErr: "want hash, truncate or keep"},
		{src: "cairn_redact path", wantErr: `kind "path"`},
		{src: "cairn_redact uri extra", wantErr: "wrong argument count"},
	} {
		var f RedactFilter
		err := f.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.src))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want one saying %q", tc.src, err, tc.wantErr)
			}
			continue
		}
		if err != nil || f.Kind != tc.kind || strings.Join(f.Keep, " ") != strings.Join(tc.keep, " ") {
			t.Errorf("%q: kind %q keep %v err %v", tc.src, f.Kind, f.Keep, err)
		}
	}
}

// encode renders one filtered field as JSON, as the access log would.
func encode(t *testing.T, field zapcore.Field) string {
	t.Helper()
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	buf, err := enc.EncodeEntry(zapcore.Entry{}, []zapcore.Field{field})
	if err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestRedactFilterHeaders(t *testing.T) {
	hdr := http.Header{"Content-Type": {"application/json"}, "X-Forwarded-For": {"203.0.113.7"}, "X-Device-Id": {"device-9f8e7d6c"}}
	field := zap.Object("headers", caddyhttp.LoggableHTTPHeader{Header: hdr})
	h, _ := redact.New(bytes.Repeat([]byte{9}, redact.MinKeySize))
	for _, tc := range []struct {
		name   string
		hasher *redact.Hasher
		want   []string
	}{
		{"hashed", h, []string{`"Content-Type":["application/json"]`, `"X-Forwarded-For":["` + h.Hash("203.0.113.7") + `"]`}},
		{"before the app provisions", nil, []string{`"Content-Type":["application/json"]`, `"X-Device-Id":["[redacted]"]`}},
	} {
		f := &RedactFilter{Kind: RedactHeaders, box: new(hasherBox), keep: redact.DefaultKeepHeaders()}
		f.box.hasher.Store(tc.hasher)
		got := encode(t, f.Filter(field))
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %s lacks %s", tc.name, got, w)
			}
		}
		for _, secret := range []string{"203.0.113.7", "device-9f8e7d6c"} {
			if strings.Contains(got, secret) {
				t.Errorf("%s: %s shows %s", tc.name, got, secret)
			}
		}
	}
	if hdr.Get("X-Device-Id") != "device-9f8e7d6c" {
		t.Error("the filter changed the request's headers")
	}
	// A field that is not a header map is dropped, not passed through.
	f := &RedactFilter{Kind: RedactHeaders, box: new(hasherBox)}
	if got := f.Filter(zap.String("headers", "203.0.113.7")); got.Type != zapcore.SkipType {
		t.Errorf("a string under kind headers was kept: %v", got)
	}
}

func TestRedactFilterIP(t *testing.T) {
	h, _ := redact.New(bytes.Repeat([]byte{9}, redact.MinKeySize))
	for _, tc := range []struct {
		ips    string
		hasher *redact.Hasher
		want   string
	}{
		{"", h, h.Hash("203.0.113.7")},
		{"truncate", h, "203.0.113.0"},
		{"keep", h, "203.0.113.7"},
		{"", nil, "[redacted]"},
		{"truncate", nil, "[redacted]"},
	} {
		f := &RedactFilter{Kind: RedactIP, IPs: tc.ips}
		if err := f.Provision(caddy.Context{}); err != nil {
			t.Fatal(err)
		}
		f.box.hasher.Store(tc.hasher)
		if got := f.Filter(zap.String("remote_ip", "203.0.113.7")).String; got != tc.want {
			t.Errorf("ips %q (hasher %t): %q, want %q", tc.ips, tc.hasher != nil, got, tc.want)
		}
		_ = f.Cleanup()
	}
}

package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
)

var builder gatewaytest.Builder

// TestSmoke runs the tool end to end at a tiny scale: 20 SSE streams in
// two conversations of ten members, three fan-out messages and half a
// second of sustained sending, against a real cairn-caddy on SQLite. It
// checks that every message reached every stream, not how fast.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cairn-caddy process")
	}
	defer builder.Cleanup()
	cfg, err := parseFlags([]string{
		"-binary", builder.Binary(t),
		"-subscribers", "20", "-members", "10",
		"-messages", "3", "-interval", "10ms",
		"-sustained", "500ms", "-senders", "2", "-settle", "100ms",
	}, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, cfg, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	report := out.String()
	t.Log(report)
	for _, want := range []string{
		"connections held        20 of 20",
		"3 messages × 10 streams, one at a time: 30 deliveries, 0 missing",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

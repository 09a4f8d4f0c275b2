package caddymodules

import (
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestLevelLoggerFiltersWithoutRefusingALowerFloor(t *testing.T) {
	for _, tc := range []struct {
		name        string
		core, floor zapcore.Level
		want        []string
	}{
		// A floor below the core's level: the core decides, no error.
		{"debug floor on an info core", zapcore.InfoLevel, zapcore.DebugLevel, []string{"info", "warn"}},
		{"debug floor on a debug core", zapcore.DebugLevel, zapcore.DebugLevel, []string{"debug", "info", "warn"}},
		{"warn floor on a debug core", zapcore.DebugLevel, zapcore.WarnLevel, []string{"warn"}},
	} {
		core, logs := observer.New(tc.core)
		var errOut zaptestBuffer
		l := levelLogger(zap.New(core, zap.ErrorOutput(&errOut)), tc.floor).Named("cairn.test").With(zap.String("k", "v"))
		l.Debug("debug")
		l.Info("info")
		l.Warn("warn")
		var got []string
		for _, e := range logs.All() {
			got = append(got, e.Message)
		}
		if len(got) != len(tc.want) {
			t.Errorf("%s: logged %v, want %v", tc.name, got, tc.want)
		}
		if errOut.n > 0 {
			t.Errorf("%s: zap wrote %d bytes of errors", tc.name, errOut.n)
		}
	}
}

// zaptestBuffer counts what zap writes to its error output.
type zaptestBuffer struct{ n int }

func (b *zaptestBuffer) Write(p []byte) (int, error) { b.n += len(p); return len(p), nil }
func (b *zaptestBuffer) Sync() error                 { return nil }

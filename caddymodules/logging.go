package caddymodules

import (
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// levelLogger returns base restricted to entries at floor or above. Unlike
// zap.IncreaseLevel, it accepts a floor below what base's core admits (the
// core then decides, as Caddy's log levels should), instead of refusing
// with a plain-text error on stderr and keeping base's level.
func levelLogger(base *zap.Logger, floor zapcore.Level) *zap.Logger {
	return base.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return levelCore{Core: c, floor: floor}
	}))
}

// levelCore drops entries below floor and hands the rest to its core.
type levelCore struct {
	zapcore.Core
	floor zapcore.Level
}

// Enabled is part of zapcore.LevelEnabler.
func (c levelCore) Enabled(l zapcore.Level) bool {
	return l >= c.floor && c.Core.Enabled(l)
}

// Level reports the lowest level both filters admit, for zapcore.LevelOf.
func (c levelCore) Level() zapcore.Level {
	return max(c.floor, zapcore.LevelOf(c.Core))
}

// With is part of zapcore.Core.
func (c levelCore) With(fields []zapcore.Field) zapcore.Core {
	return levelCore{Core: c.Core.With(fields), floor: c.floor}
}

// Check is part of zapcore.Core.
func (c levelCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if e.Level < c.floor {
		return ce
	}
	return c.Core.Check(e, ce)
}

package caddymodules

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/cairn-chat/cairn-caddy/internal/delivery"
	"github.com/cairn-chat/cairn-caddy/internal/pow"
	"github.com/cairn-chat/cairn-caddy/internal/ratelimit"
)

// powReplayPrefix prefixes the Redis keys that remember used stamps.
const powReplayPrefix = "cairn:pow:"

// ProofOfWork is cairn_delivery's proof_of_work block: a hashcash-style
// stamp (header X-Cairn-PoW) before the expensive first actions of an
// account, 428 with a challenge without one (docs/rate-limiting.md,
// "Proof of work").
//
// Caddyfile, inside cairn_delivery:
//
//	proof_of_work {
//	    difficulty        16           # bits; required
//	    methods           <nsid>...    # default createConvo sendChatRequest
//	    first_key_package on|off       # default on
//	    new_account       +4           # extra bits under the adaptive signals
//	    high_churn        +4           # (a cairn_rate_limit with signals runs first)
//	    max_age           5m
//	    max_clock_skew    30s          # how far ahead of the server a stamp may be dated
//	    replay            auto|redis|memory
//	}
type ProofOfWork struct {
	// Difficulty is the base number of leading zero bits, 1 to 32.
	Difficulty int `json:"difficulty"`
	// Methods always require a stamp; default blue.catbird.mls.createConvo
	// and blue.catbird.mls.sendChatRequest.
	Methods []string `json:"methods,omitempty"`
	// SkipFirstKeyPackage turns off the stamp on an account's first
	// key-package publication (publishKeyPackage, publishKeyPackages,
	// registerDevice while it has no key package).
	SkipFirstKeyPackage bool `json:"skip_first_key_package,omitempty"`
	// NewAccountBits and HighChurnBits are added to the difficulty while
	// the signal holds.
	NewAccountBits int `json:"new_account_bits,omitempty"`
	HighChurnBits  int `json:"high_churn_bits,omitempty"`
	// MaxAge is how long a stamp stays valid after its time. Default 5m.
	MaxAge caddy.Duration `json:"max_age,omitempty"`
	// MaxClockSkew is how far in the future a stamp's time may be. Default
	// 30s. After the replay memory begins (a restart with replay memory, a
	// flushed Redis), stamps dated within this of its start are refused.
	MaxClockSkew caddy.Duration `json:"max_clock_skew,omitempty"`
	// Replay is where used stamps are remembered: "auto" (default: Redis
	// when configured), "redis" or "memory".
	Replay string `json:"replay,omitempty"`
}

// build checks w and returns the delivery service's gate.
func (w *ProofOfWork) build(app *App) (*delivery.ProofOfWork, error) {
	if w.Difficulty < 1 || w.Difficulty > pow.MaxBits {
		return nil, fmt.Errorf("proof_of_work difficulty %d: want 1 to %d bits (16 costs a phone well under a second)", w.Difficulty, pow.MaxBits)
	}
	for _, b := range []int{w.NewAccountBits, w.HighChurnBits} {
		if b < 0 || w.Difficulty+b > pow.MaxBits {
			return nil, fmt.Errorf("proof_of_work: extra bits %d: want 0 or more, with the difficulty at most %d", b, pow.MaxBits)
		}
	}
	for _, m := range w.Methods {
		if !strings.HasPrefix(m, delivery.Namespace) || len(m) == len(delivery.Namespace) {
			return nil, fmt.Errorf("proof_of_work methods %q: want a %s* method NSID", m, delivery.Namespace)
		}
	}
	if w.MaxAge < 0 || time.Duration(w.MaxAge) > time.Hour {
		return nil, fmt.Errorf("proof_of_work max_age %s: want a duration up to 1h", time.Duration(w.MaxAge))
	}
	if w.MaxClockSkew < 0 || time.Duration(w.MaxClockSkew) > 5*time.Minute {
		return nil, fmt.Errorf("proof_of_work max_clock_skew %s: want a duration up to 5m", time.Duration(w.MaxClockSkew))
	}
	if w.Replay == "" {
		w.Replay = backendAuto
	}
	replay, err := app.ReplayStore(w.Replay, powReplayPrefix)
	if err != nil {
		return nil, fmt.Errorf("proof_of_work replay: %w", err)
	}
	m := app.Metrics()
	m.PreregisterPoWOutcomes(pow.Reasons())
	newBits, churnBits := w.NewAccountBits, w.HighChurnBits
	return &delivery.ProofOfWork{
		Verifier:        &pow.Verifier{MaxAge: time.Duration(w.MaxAge), Skew: time.Duration(w.MaxClockSkew), Replay: replay},
		Bits:            w.Difficulty,
		Methods:         w.Methods,
		FirstKeyPackage: !w.SkipFirstKeyPackage,
		Extra: func(ctx context.Context) int {
			a, ok := ratelimit.FromContext(ctx)
			if !ok {
				return 0
			}
			extra := 0
			if a.Signals.Has(ratelimit.SignalNewAccount) {
				extra += newBits
			}
			if a.Signals.Has(ratelimit.SignalHighChurn) {
				extra += churnBits
			}
			return extra
		},
		OnCheck: m.PoWCheck,
	}, nil
}

// unmarshalProofOfWork reads the proof_of_work block.
func unmarshalProofOfWork(d *caddyfile.Dispenser, w *ProofOfWork) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if opt == "methods" {
			w.Methods = append(w.Methods, d.RemainingArgs()...)
			if len(w.Methods) == 0 {
				return d.Errf("proof_of_work methods needs at least one NSID")
			}
			continue
		}
		var v string
		if !d.AllArgs(&v) {
			return d.Errf("proof_of_work %s takes one value", opt)
		}
		switch opt {
		case "difficulty":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > pow.MaxBits {
				return d.Errf("proof_of_work difficulty %q: want 1 to %d bits", v, pow.MaxBits)
			}
			w.Difficulty = n
		case "first_key_package":
			if v != "on" && v != "off" {
				return d.Errf("proof_of_work first_key_package %q: want on or off", v)
			}
			w.SkipFirstKeyPackage = v == "off"
		case "new_account", "high_churn":
			n, err := strconv.Atoi(strings.TrimPrefix(v, "+"))
			if err != nil || n < 0 || n > pow.MaxBits || !strings.HasPrefix(v, "+") {
				return d.Errf("proof_of_work %s %q: want extra bits such as +4", opt, v)
			}
			if opt == "new_account" {
				w.NewAccountBits = n
			} else {
				w.HighChurnBits = n
			}
		case "max_age":
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur <= 0 || dur > time.Hour {
				return d.Errf("proof_of_work max_age %q: want a positive duration up to 1h such as 5m", v)
			}
			w.MaxAge = caddy.Duration(dur)
		case "max_clock_skew":
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur <= 0 || dur > 5*time.Minute {
				return d.Errf("proof_of_work max_clock_skew %q: want a positive duration up to 5m such as 30s", v)
			}
			w.MaxClockSkew = caddy.Duration(dur)
		case "replay":
			w.Replay = v
		default:
			return d.Errf("unrecognized proof_of_work option %q: want difficulty, methods, first_key_package, new_account, high_churn, max_age, max_clock_skew or replay", opt)
		}
	}
	if w.Difficulty == 0 {
		return d.Errf("proof_of_work needs a difficulty (bits), such as difficulty 16")
	}
	return nil
}

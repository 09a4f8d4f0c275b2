package metrics

import "github.com/prometheus/client_golang/prometheus"

// pushProviders and pushOutcomes bound the push metric's labels; anything
// else is counted as "other".
var (
	pushProviders = map[string]bool{"apns": true, "unifiedpush": true, "none": true}
	pushOutcomes  = map[string]bool{"sent": true, "failed": true, "unregistered": true, "unreadable": true, "no_provider": true, "dropped": true}
)

// Push counts push wake-ups by provider and outcome (internal/push). No
// label is an identity.
type Push struct {
	outcomes *prometheus.CounterVec
}

func newPush(reg *prometheus.Registry) *Push {
	p := &Push{outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "push", Name: "wakeups_total",
		Help: "Push wake-ups by provider (apns, unifiedpush; none for conversations dropped by a full queue) and outcome.",
	}, []string{"provider", "outcome"})}
	reg.MustRegister(p.outcomes)
	return p
}

// PushOutcome counts one wake-up's outcome; it implements push.Observer.
func (p *Push) PushOutcome(provider, outcome string) {
	if !pushProviders[provider] {
		provider = "other"
	}
	if !pushOutcomes[outcome] {
		outcome = "other"
	}
	p.outcomes.WithLabelValues(provider, outcome).Inc()
}

package metrics

import "github.com/prometheus/client_golang/prometheus"

// realtimeTransports are the label values of the transport label; anything
// else is counted as "other", so the label stays bounded.
var realtimeTransports = map[string]bool{"sse": true, "websocket": true}

// Realtime holds the event-stream collectors. Its methods match the
// realtime package's Observer, so the hub reports to it directly. Every
// label is the transport; none is an identity.
type Realtime struct {
	open      *prometheus.GaugeVec
	delivered *prometheus.CounterVec
	slow      *prometheus.CounterVec
	refused   *prometheus.CounterVec
	replayed  *prometheus.HistogramVec
}

func newRealtime(reg *prometheus.Registry) *Realtime {
	r := &Realtime{
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "realtime", Name: "connections",
			Help: "Open event streams by transport (sse, websocket).",
		}, []string{"transport"}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "realtime", Name: "events_delivered_total",
			Help: "Events written to stream clients, by transport.",
		}, []string{"transport"}),
		slow: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "realtime", Name: "slow_consumer_drops_total",
			Help: "Streams closed because their client fell behind, by transport.",
		}, []string{"transport"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "realtime", Name: "refused_total",
			Help: "Streams refused by a connection cap, by transport.",
		}, []string{"transport"}),
		replayed: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "realtime", Name: "replay_events",
			Help:    "Events a resuming stream replayed from the store before going live, by transport.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 9),
		}, []string{"transport"}),
	}
	reg.MustRegister(r.open, r.delivered, r.slow, r.refused, r.replayed)
	// Every transport's series exist at zero from the start, so alerts on
	// drops and dashboards see them before the first event.
	for t := range realtimeTransports {
		r.open.WithLabelValues(t)
		r.delivered.WithLabelValues(t)
		r.slow.WithLabelValues(t)
		r.refused.WithLabelValues(t)
	}
	return r
}

func transportLabel(t string) string {
	if realtimeTransports[t] {
		return t
	}
	return "other"
}

// ConnOpened counts a stream opening.
func (r *Realtime) ConnOpened(transport string) {
	r.open.WithLabelValues(transportLabel(transport)).Inc()
}

// ConnClosed counts a stream closing.
func (r *Realtime) ConnClosed(transport string) {
	r.open.WithLabelValues(transportLabel(transport)).Dec()
}

// EventsDelivered counts n events written to a client.
func (r *Realtime) EventsDelivered(transport string, n int) {
	r.delivered.WithLabelValues(transportLabel(transport)).Add(float64(n))
}

// SlowConsumerDropped counts a stream closed for falling behind.
func (r *Realtime) SlowConsumerDropped(transport string) {
	r.slow.WithLabelValues(transportLabel(transport)).Inc()
}

// Replayed records how many events a resuming stream replayed.
func (r *Realtime) Replayed(transport string, n int) {
	r.replayed.WithLabelValues(transportLabel(transport)).Observe(float64(n))
}

// Refused counts a stream refused by a connection cap.
func (r *Realtime) Refused(transport string) {
	r.refused.WithLabelValues(transportLabel(transport)).Inc()
}

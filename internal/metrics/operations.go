package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// operations are the collectors of what the store, the key-package stock,
// the backups and the certificates report. Every label is a fixed name or
// operator configuration.
type operations struct {
	storeDuration *prometheus.HistogramVec
	storeErrors   *prometheus.CounterVec
	stock         *prometheus.GaugeVec
	backupTime    prometheus.Gauge
	backupSize    prometheus.Gauge
	backupEvery   prometheus.Gauge
	certExpiry    *prometheus.GaugeVec

	certMu    sync.Mutex
	certNames map[string]bool
}

// storeFailures are the kind label values of the store's error counter,
// observe.Unavailable and observe.Internal.
var storeFailures = []string{"unavailable", "internal"}

// stockBands are the stock label values of the key-package gauge.
var stockBands = []string{"empty", "low", "ok"}

// MaxCertificateNames bounds the name label of the certificate expiry
// gauge: a node serves the names its operator configured, a handful; past
// this many (on-demand TLS), further names are not exported one by one.
const MaxCertificateNames = 100

func (m *Metrics) registerOperations() {
	o := &m.ops
	o.storeDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: "store", Name: "operation_duration_seconds",
		Help:    "Store call latency by backend (sqlite, postgres) and operation (the store method, such as append_message), whatever the outcome.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"backend", "operation"})
	o.storeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "store", Name: "operation_errors_total",
		Help: "Store calls that failed, by backend, operation and kind: unavailable (the database could not take the call) or internal. Domain outcomes (not found, stale epoch, conflict) are not errors.",
	}, []string{"backend", "operation", "kind"})
	o.stock = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Subsystem: "keypackage", Name: "devices",
		Help: "Devices by key-package stock across the store: empty (no available package), low (below the replenish threshold) or ok; read periodically.",
	}, []string{"stock"})
	o.backupTime = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Subsystem: "backup", Name: "last_success_timestamp_seconds",
		Help: "When the newest archive in the backup target was taken (Unix time); 0 while the target holds none. Set after each backup and each schedule check.",
	})
	o.backupSize = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Subsystem: "backup", Name: "last_size_bytes",
		Help: "Size of the newest archive in the backup target.",
	})
	o.backupEvery = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Subsystem: "backup", Name: "interval_seconds",
		Help: "The configured interval between scheduled backups.",
	})
	o.certExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Subsystem: "tls", Name: "certificate_expiry_timestamp_seconds",
		Help: "When the certificate this node serves for a configured name expires (Unix time), by name.",
	}, []string{"name"})
	o.certNames = map[string]bool{}
	m.Registry.MustRegister(o.storeDuration, o.storeErrors, o.stock, o.backupTime, o.backupSize, o.backupEvery, o.certExpiry)
	for _, b := range stockBands {
		o.stock.WithLabelValues(b)
	}
}

// StoreCalls records the calls of one store; it is an observe.Recorder.
// It resolves every operation's series once, and creates the error series
// at zero, so that dashboards and alerts see them before the first failure.
type StoreCalls struct {
	duration map[string]prometheus.Observer
	errors   map[string][]prometheus.Counter // by storeFailures' order
	vecs     *operations
	backend  string
}

// StoreCalls returns the recorder of a store on backend ("sqlite",
// "postgres") whose operations are ops (observe.Operations()).
func (m *Metrics) StoreCalls(backend string, ops []string) *StoreCalls {
	c := &StoreCalls{duration: map[string]prometheus.Observer{}, errors: map[string][]prometheus.Counter{}, vecs: &m.ops, backend: backend}
	for _, op := range ops {
		c.duration[op] = m.ops.storeDuration.WithLabelValues(backend, op)
		for _, kind := range storeFailures {
			c.errors[op] = append(c.errors[op], m.ops.storeErrors.WithLabelValues(backend, op, kind))
		}
	}
	return c
}

// StoreCall records one call; failure is "", "unavailable" or "internal".
// op must be one of the operations StoreCalls was made with (a fixed
// method name), never text from a statement or an argument.
func (c *StoreCalls) StoreCall(op string, took time.Duration, failure string) {
	d, ok := c.duration[op]
	if !ok {
		return
	}
	d.Observe(took.Seconds())
	for i, kind := range storeFailures {
		if kind == failure {
			c.errors[op][i].Inc()
		}
	}
}

// KeyPackageStock sets the stock gauge from a reading.
func (m *Metrics) KeyPackageStock(s store.KeyPackageStock) {
	m.ops.stock.WithLabelValues("empty").Set(float64(s.Empty))
	m.ops.stock.WithLabelValues("low").Set(float64(s.Low))
	m.ops.stock.WithLabelValues("ok").Set(float64(s.Devices - s.Empty - s.Low))
}

// BackupArchive records the newest archive in the backup target: when it
// was taken and its size. A zero time means the target holds none.
func (m *Metrics) BackupArchive(taken time.Time, size int64) {
	ts := 0.0
	if !taken.IsZero() {
		ts = float64(taken.Unix())
	}
	m.ops.backupTime.Set(ts)
	m.ops.backupSize.Set(float64(size))
}

// BackupInterval records the configured interval between backups.
func (m *Metrics) BackupInterval(d time.Duration) { m.ops.backupEvery.Set(d.Seconds()) }

// CertificateExpiry records when the certificate served for name expires.
// name is a name the operator configured a site for; past
// MaxCertificateNames distinct names, new ones are ignored.
func (m *Metrics) CertificateExpiry(name string, notAfter time.Time) {
	o := &m.ops
	o.certMu.Lock()
	defer o.certMu.Unlock()
	if !o.certNames[name] {
		if len(o.certNames) >= MaxCertificateNames {
			return
		}
		o.certNames[name] = true
	}
	o.certExpiry.WithLabelValues(name).Set(float64(notAfter.Unix()))
}

// StockWatch is a worker that reads the store's key-package stock every
// Interval into cairn_keypackage_devices. Every node reads the same shared
// store, so every node reports the service-wide figure.
type StockWatch struct {
	Store   store.StockReader
	Metrics *Metrics
	// Low is the replenish threshold: a device with fewer available
	// packages is "low".
	Low int
	// Interval between readings.
	Interval time.Duration
	// OnError, if set, is told of a failed reading.
	OnError func(error)
}

// Name implements worker.Worker.
func (w *StockWatch) Name() string { return "keypackage_stock" }

// Run reads the stock at once and then every Interval until ctx is done.
func (w *StockWatch) Run(ctx context.Context) {
	t := time.NewTicker(w.Interval)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, w.Interval)
		s, err := w.Store.KeyPackageStock(rctx, w.Low)
		cancel()
		switch {
		case err == nil:
			w.Metrics.KeyPackageStock(s)
		case ctx.Err() == nil && w.OnError != nil:
			w.OnError(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

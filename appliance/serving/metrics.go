package serving

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the serving counters exported on /metrics.
type Metrics struct {
	active    *prometheus.GaugeVec
	waiting   *prometheus.GaugeVec
	loaded    *prometheus.GaugeVec
	rejected  *prometheus.CounterVec
	Finished  *prometheus.CounterVec
	Tokens    *prometheus.CounterVec
	Cancelled *prometheus.CounterVec
	TTFT      *prometheus.HistogramVec
}

// NewMetrics creates the metrics and registers them with reg (when not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		active:    prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "exo_generations_active", Help: "Generations running now."}, []string{"model"}),
		waiting:   prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "exo_generations_waiting", Help: "Requests waiting for a model or a slot."}, []string{"model"}),
		loaded:    prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "exo_model_loaded", Help: "1 while the model is loaded on this node."}, []string{"model"}),
		rejected:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "exo_requests_rejected_total", Help: "Requests refused because the queue was full."}, []string{"model"}),
		Finished:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "exo_generations_total", Help: "Finished generations by finish reason."}, []string{"model", "finish_reason"}),
		Tokens:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "exo_tokens_total", Help: "Tokens processed, by kind (prompt, generated; prompt_cached: prompt tokens taken from an earlier request's cache, counted in prompt too)."}, []string{"model", "kind"}),
		Cancelled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "exo_generations_cancelled_total", Help: "Generations stopped because the client went away."}, []string{"model"}),
		TTFT: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "exo_time_to_first_token_seconds", Help: "From admission to the first generated token.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 14),
		}, []string{"model"}),
	}
	if reg != nil {
		reg.MustRegister(m.active, m.waiting, m.loaded, m.rejected, m.Finished, m.Tokens, m.Cancelled, m.TTFT)
	}
	return m
}

package pipeline

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// stageCollector exports the hosted stages' figures to /metrics at scrape time, from the same
// Status the cluster API shows, so the two never disagree.
type stageCollector struct {
	h                                           *Host
	rounds, steps, maxBatch, active, ring, busy *prometheus.Desc
	swaps, swapTime                             *prometheus.Desc
}

func newStageCollector(h *Host) *stageCollector {
	labels := []string{"instance", "model", "layers"}
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, labels, nil) }
	return &stageCollector{
		h:        h,
		rounds:   d("exo_pipeline_stage_rounds_total", "Batched forward passes a pipeline stage hosted here ran."),
		steps:    d("exo_pipeline_stage_steps_total", "Request steps (decode tokens, prompt chunks) those passes evaluated; steps/rounds is the mean batch."),
		maxBatch: d("exo_pipeline_stage_max_batch", "The most request steps one forward pass of the stage evaluated."),
		active:   d("exo_pipeline_stage_active_requests", "Requests whose KV cache the stage holds."),
		ring:     d("exo_pipeline_stage_ring_tokens_total", "Decode tokens a first stage received round the ring from the last stage."),
		busy:     d("exo_pipeline_stage_busy_seconds_total", "Time the stage's forward passes took; over rounds, a pass's mean compute time."),
		swaps:    d("exo_pipeline_stage_swaps_total", "Exchanges of parts a tensor-parallel shard hosted here made with the other shards."),
		swapTime: d("exo_pipeline_stage_swap_seconds_total", "Time those exchanges took, waiting for the slower shard included."),
	}
}

func (c *stageCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.rounds, c.steps, c.maxBatch, c.active, c.ring, c.busy, c.swaps, c.swapTime} {
		ch <- d
	}
}

func (c *stageCollector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.h.Status() {
		lv := []string{st.Instance, st.Model, fmt.Sprintf("%d-%d", st.Layers[0], st.Layers[1])}
		ch <- prometheus.MustNewConstMetric(c.active, prometheus.GaugeValue, float64(st.Active), lv...)
		ch <- prometheus.MustNewConstMetric(c.ring, prometheus.CounterValue, float64(st.RingTokens), lv...)
		if b := st.Batching; b != nil {
			ch <- prometheus.MustNewConstMetric(c.rounds, prometheus.CounterValue, float64(b.Rounds), lv...)
			ch <- prometheus.MustNewConstMetric(c.steps, prometheus.CounterValue, float64(b.Steps), lv...)
			ch <- prometheus.MustNewConstMetric(c.maxBatch, prometheus.GaugeValue, float64(b.MaxBatch), lv...)
			ch <- prometheus.MustNewConstMetric(c.busy, prometheus.CounterValue, b.BusySeconds, lv...)
		}
		if s := st.Swaps; s != nil {
			ch <- prometheus.MustNewConstMetric(c.swaps, prometheus.CounterValue, float64(s.Count), lv...)
			ch <- prometheus.MustNewConstMetric(c.swapTime, prometheus.CounterValue, s.Seconds, lv...)
		}
	}
}

package notify

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are labelled with the webhook's position in Config.URLs, not
// its URL, which may hold a secret.
type metrics struct {
	deliveries *prometheus.CounterVec
	attempts   *prometheus.CounterVec
	dropped    *prometheus.CounterVec
	queued     *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vouch_webhook_deliveries_total",
			Help: "State changes whose delivery ended, by webhook (its position among the --webhook flags, from 0) and result: delivered, failed (attempts exhausted or a status that is not retried) or abandoned at shutdown.",
		}, []string{"webhook", "result"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vouch_webhook_attempts_total",
			Help: "Webhook requests by webhook and response status class (2xx, 4xx, 5xx, ...; error when no response came).",
		}, []string{"webhook", "status"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vouch_webhook_dropped_total",
			Help: "State changes dropped before any attempt because the webhook's queue was full (the oldest is dropped) or the dispatcher was closed.",
		}, []string{"webhook"}),
		queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vouch_webhook_queue_length",
			Help: "State changes waiting for their first attempt, by webhook.",
		}, []string{"webhook"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.deliveries, m.attempts, m.dropped, m.queued} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if errors.As(err, &already) {
				return nil, fmt.Errorf("notify: webhook metrics are already registered: create one Dispatcher per registry")
			}
			return nil, fmt.Errorf("notify: register metrics: %w", err)
		}
	}
	return m, nil
}

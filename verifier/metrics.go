package verifier

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vouch-attest/vouch/store"
)

// Attestation results other than a machine state, as counted by
// vouch_attestations_total.
const (
	resultQuoteRejected = "quote_rejected"
	resultNonceReused   = "nonce_reused"
	resultError         = "error"
)

// Route patterns whose requests count as enrollments, challenges and
// attestations. They are the patterns of routes().
const (
	routeEnroll    = "POST /v1/enroll"
	routeActivate  = "POST /v1/enroll/{id}/activate"
	routeChallenge = "GET /v1/agents/{name}/challenge"
	routeEvidence  = "POST /v1/agents/{name}/evidence"
)

// maxReasonLabels bounds the distinct reason codes counted by
// vouch_attestation_reasons_total. Codes come from this package, the
// backends and the policies, so the set is small, but a policy that
// generated codes would otherwise create a series per code.
const maxReasonLabels = 200

// scrapeTimeout bounds the store read behind each scrape.
const scrapeTimeout = 5 * time.Second

// metrics holds the verifier's Prometheus collectors. Counters and the
// histogram change as requests are served, and the gauges are computed
// from the store and the in-memory tables at each scrape.
type metrics struct {
	registry *prometheus.Registry

	attestations      *prometheus.CounterVec
	reasons           *prometheus.CounterVec
	duration          prometheus.Histogram
	enrollments       *prometheus.CounterVec
	challengesIssued  prometheus.Counter
	challengesExpired prometheus.Counter
	stateChanges      *prometheus.CounterVec
	requests          *prometheus.CounterVec

	mu           sync.Mutex
	reasonLabels map[string]bool
}

func newMetrics(s *Server, reg *prometheus.Registry) (*metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	m := &metrics{
		registry: reg,
		attestations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vouch_attestations_total",
			Help: "Evidence requests handled, by result: the machine's state after a verdict (trusted, untrusted, pending), quote_rejected, nonce_reused, or the API error code of a request rejected before judgement.",
		}, []string{"result"}),
		reasons: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vouch_attestation_reasons_total",
			Help: "Reason codes in verdicts, one count per code and verdict (\"other\" past 200 distinct codes).",
		}, []string{"code"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "vouch_attestation_duration_seconds",
			Help:    "Time to handle an evidence request that reached a verdict, from its arrival to the response, reading the body included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}),
		enrollments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vouch_enrollments_total",
			Help: "Enrollment requests by step (request, activate) and outcome: challenge_sent, enrolled, or the API error code.",
		}, []string{"step", "outcome"}),
		challengesIssued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vouch_challenges_issued_total",
			Help: "Attestation challenges (nonces) sent to agents.",
		}),
		challengesExpired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vouch_challenges_expired_total",
			Help: "Challenges whose time to live passed without accepted evidence.",
		}),
		stateChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vouch_machine_state_changes_total",
			Help: "Changes of a machine's state, by old and new state (an empty old state is an enrollment, an empty new state a removal).",
		}, []string{"from", "to"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vouch_http_requests_total",
			Help: "HTTP requests by route pattern and status code.",
		}, []string{"route", "code"}),
		reasonLabels: map[string]bool{},
	}
	for _, c := range []prometheus.Collector{
		m.attestations, m.reasons, m.duration, m.enrollments, m.challengesIssued,
		m.challengesExpired, m.stateChanges, m.requests, &scrapeCollector{s: s},
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("verifier: register metrics: %w (give each Server its own registry)", err)
		}
	}
	return m, nil
}

// MetricsHandler returns the handler of the Prometheus text exposition
// of the verifier's metrics. It has no authentication of its own: vouch
// server serves it on the separate --metrics-listen address.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(s.log.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      s.metrics.registry,
	})
}

// countVerdict counts the result and reason codes of the verdict on the
// evidence request r.
func (s *Server) countVerdict(r *http.Request, result string, codes []string) {
	setResult(r, result)
	s.metrics.attestations.WithLabelValues(result).Inc()
	for _, code := range codes {
		s.metrics.reasons.WithLabelValues(s.metrics.reasonLabel(code)).Inc()
	}
}

func (m *metrics) reasonLabel(code string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.reasonLabels[code] {
		return code
	}
	if len(m.reasonLabels) >= maxReasonLabels {
		return "other"
	}
	m.reasonLabels[code] = true
	return code
}

// scrapeCollector computes the gauges at each scrape.
type scrapeCollector struct{ s *Server }

var (
	descMachines = prometheus.NewDesc("vouch_machines",
		"Enrolled machines by state.", []string{"state"}, nil)
	descPendingEnrollments = prometheus.NewDesc("vouch_enrollments_pending",
		"Enrollments that sent a credential challenge and wait for its activation.", nil, nil)
	descOutstandingChallenges = prometheus.NewDesc("vouch_challenges_outstanding",
		"Challenges sent and neither answered nor expired.", nil, nil)
	descAgentsWaiting = prometheus.NewDesc("vouch_agents_waiting",
		"Agents holding a challenge request open.", nil, nil)
	descMachineState = prometheus.NewDesc("vouch_machine_state",
		"1 for each machine, labelled with its current state (only with per-machine metrics on).", []string{"machine", "state"}, nil)
	descMachineVerdict = prometheus.NewDesc("vouch_machine_last_verdict_timestamp_seconds",
		"Unix time of each machine's last verdict, absent before its first (only with per-machine metrics on).", []string{"machine"}, nil)
	descMachineBoots = prometheus.NewDesc("vouch_machine_boot_count",
		"Boots of each machine seen by the verifier (only with per-machine metrics on).", []string{"machine"}, nil)
)

func (c *scrapeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descMachines
	ch <- descPendingEnrollments
	ch <- descOutstandingChallenges
	ch <- descAgentsWaiting
	if c.s.cfg.MetricsPerMachine {
		ch <- descMachineState
		ch <- descMachineVerdict
		ch <- descMachineBoots
	}
}

func (c *scrapeCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	pending, outstanding, waiting := s.sweepForMetrics()
	ch <- prometheus.MustNewConstMetric(descPendingEnrollments, prometheus.GaugeValue, float64(pending))
	ch <- prometheus.MustNewConstMetric(descOutstandingChallenges, prometheus.GaugeValue, float64(outstanding))
	ch <- prometheus.MustNewConstMetric(descAgentsWaiting, prometheus.GaugeValue, float64(waiting))

	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	counter, canCount := s.store.(store.StateCounter)
	if canCount && !s.cfg.MetricsPerMachine {
		counts, err := counter.CountByState(ctx)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(descMachines, fmt.Errorf("count machines in the store: %w", err))
			return
		}
		collectStateCounts(ch, counts)
		return
	}

	machines, err := s.store.Machines(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descMachines, fmt.Errorf("read machines from the store: %w", err))
		return
	}
	counts := map[string]int{}
	for _, m := range machines {
		counts[m.State]++
	}
	collectStateCounts(ch, counts)
	if !s.cfg.MetricsPerMachine {
		return
	}
	for _, m := range machines {
		ch <- prometheus.MustNewConstMetric(descMachineState, prometheus.GaugeValue, 1, m.Name, m.State)
		ch <- prometheus.MustNewConstMetric(descMachineBoots, prometheus.GaugeValue, float64(m.BootCount), m.Name)
		if !m.LastVerdictAt.IsZero() {
			ch <- prometheus.MustNewConstMetric(descMachineVerdict, prometheus.GaugeValue, float64(m.LastVerdictAt.UnixNano())/1e9, m.Name)
		}
	}
}

// collectStateCounts sends vouch_machines for every state, zero included,
// so that an alert on a state never finds the series missing.
func collectStateCounts(ch chan<- prometheus.Metric, counts map[string]int) {
	for _, state := range []string{store.StatePending, store.StateTrusted, store.StateUntrusted, store.StateUnreachable} {
		ch <- prometheus.MustNewConstMetric(descMachines, prometheus.GaugeValue, float64(counts[state]), state)
	}
}

// sweepForMetrics counts the pending enrollments, outstanding challenges
// and waiting agents, and counts each challenge that expired unanswered
// since the last sweep.
func (s *Server) sweepForMetrics() (pendingEnrollments, outstandingChallenges, waitingAgents int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for _, e := range s.enrollments {
		if !now.After(e.expires) {
			pendingEnrollments++
		}
	}
	for _, ch := range s.challenges {
		switch {
		case ch.used:
		case !now.After(ch.expires):
			outstandingChallenges++
		default:
			s.countExpiredLocked(ch)
		}
	}
	for _, sess := range s.sessions {
		if sess.waiting > 0 {
			waitingAgents++
		}
	}
	return pendingEnrollments, outstandingChallenges, waitingAgents
}

// countExpiredLocked counts ch as expired once. The caller holds s.mu and
// has checked that ch expired without accepted evidence.
func (s *Server) countExpiredLocked(ch *challenge) {
	if !ch.expiryCounted {
		ch.expiryCounted = true
		s.metrics.challengesExpired.Inc()
	}
}

// observedWriter records what a handler responded, for the metrics.
type observedWriter struct {
	http.ResponseWriter
	status int
	// errorCode is the api.Error code of an error response.
	errorCode string
	// result is the attestation result set by record.
	result string
}

func (w *observedWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *observedWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *observedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type observedWriterKey struct{}

// setErrorCode records the code of an error response written to w.
func setErrorCode(w http.ResponseWriter, code string) {
	if ow, ok := w.(*observedWriter); ok {
		ow.errorCode = code
	}
}

// setResult records the attestation result of the request r.
func setResult(r *http.Request, result string) {
	if ow, ok := r.Context().Value(observedWriterKey{}).(*observedWriter); ok {
		ow.result = result
	}
}

// observe wraps the handler of a route to count its requests, and the
// enrollments, challenges and attestations it serves.
func (s *Server) observe(pattern string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ow := &observedWriter{ResponseWriter: w}
		h.ServeHTTP(ow, r.WithContext(context.WithValue(r.Context(), observedWriterKey{}, ow)))
		status := ow.status
		if status == 0 {
			// The handler returned without writing (a client that went away).
			status = http.StatusOK
		}
		s.metrics.requests.WithLabelValues(pattern, strconv.Itoa(status)).Inc()
		s.metrics.countRoute(pattern, ow, status, time.Since(start))
	})
}

func (m *metrics) countRoute(pattern string, ow *observedWriter, status int, elapsed time.Duration) {
	outcome := ow.errorCode
	switch pattern {
	case routeEnroll:
		if status == http.StatusOK {
			outcome = "challenge_sent"
		}
		if outcome != "" {
			m.enrollments.WithLabelValues("request", outcome).Inc()
		}
	case routeActivate:
		if status == http.StatusOK {
			outcome = "enrolled"
		}
		if outcome != "" {
			m.enrollments.WithLabelValues("activate", outcome).Inc()
		}
	case routeChallenge:
		if status == http.StatusOK && ow.errorCode == "" {
			m.challengesIssued.Inc()
		}
	case routeEvidence:
		if ow.result != "" {
			m.duration.Observe(elapsed.Seconds())
			return // record counted the verdict
		}
		if outcome == "" && status >= 400 {
			outcome = resultError
		}
		if outcome != "" {
			m.attestations.WithLabelValues(outcome).Inc()
		}
	}
}

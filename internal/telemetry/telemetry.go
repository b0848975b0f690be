// Package telemetry makes fpsafe observable: Prometheus metrics, the one-line decision
// record per message that compliance teams read ("why was this message tagged?"), and the
// /healthz and /readyz endpoints. It only observes: nothing here changes a decision.
package telemetry

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/policy"
)

// Recorder counts decisions and writes the decision log. It is safe for concurrent use.
type Recorder struct {
	reg       *prometheus.Registry
	decisions *slog.Logger

	messages  *prometheus.CounterVec
	took      prometheus.Histogram
	latency   *prometheus.HistogramVec
	outcomes  *prometheus.CounterVec
	allowlist *prometheus.CounterVec
	unscanned *prometheus.CounterVec
}

// New returns a recorder writing decision records to decisions (nil = discard).
func New(decisions *slog.Logger) *Recorder {
	if decisions == nil {
		decisions = slog.New(slog.DiscardHandler)
	}
	r := &Recorder{reg: prometheus.NewRegistry(), decisions: decisions}
	r.messages = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fpsafe_messages_total", Help: "Messages decided, by action and verdict.",
	}, []string{"action", "verdict"})
	r.took = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "fpsafe_decision_seconds", Help: "Time from end-of-message to the decision.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2, 4, 8, 16},
	})
	r.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "fpsafe_engine_seconds", Help: "Engine scan latency, by engine.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2, 4, 8},
	}, []string{"engine"})
	r.outcomes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fpsafe_engine_outcomes_total", Help: "Engine verdicts, by engine and outcome (clean, spam, suspicious, virus, error, timeout, skipped).",
	}, []string{"engine", "outcome"})
	r.allowlist = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fpsafe_allowlist_total", Help: "Allowlist matches by entry: result bypass (authenticated) or refused (authentication failed).",
	}, []string{"entry", "result"})
	r.unscanned = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fpsafe_unscanned_total", Help: "Messages delivered unscanned, by reason.",
	}, []string{"reason"})
	r.reg.MustRegister(r.messages, r.took, r.latency, r.outcomes, r.allowlist, r.unscanned,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// Registry is where gauges of other components are registered, and what /metrics serves.
func (r *Recorder) Registry() *prometheus.Registry { return r.reg }

// GaugeFunc registers a gauge read at scrape time (sessions in flight, spool bytes, ...).
func (r *Recorder) GaugeFunc(name, help string, f func() float64) {
	r.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

// Record counts one decision and writes its decision record.
func (r *Recorder) Record(m *mail.Message, d policy.Decision, took time.Duration) {
	r.messages.WithLabelValues(d.Action.String(), string(d.Verdict)).Inc()
	r.took.Observe(took.Seconds())
	for _, v := range d.Verdicts {
		r.latency.WithLabelValues(v.Engine).Observe(v.Duration.Seconds())
		r.outcomes.WithLabelValues(v.Engine, string(v.Outcome)).Inc()
	}
	if d.Match != nil {
		res := "refused"
		if d.Match.Authenticated {
			res = "bypass"
		}
		r.allowlist.WithLabelValues(d.Match.Entry, res).Inc()
	}
	if d.Verdict == policy.VerdictUnscanned {
		r.unscanned.WithLabelValues(UnscannedReason(d)).Inc()
	}
	r.decisions.LogAttrs(context.Background(), slog.LevelInfo, "decision", Attrs(m, d, took)...)
}

// UnscannedReason classifies why a message went unscanned, for a metric label.
func UnscannedReason(d policy.Decision) string {
	for _, r := range d.Reasons {
		switch why := strings.TrimPrefix(r, "unscanned: "); {
		case why == r:
			continue
		case strings.HasPrefix(why, "no engines configured"):
			return "no_engines"
		case strings.HasPrefix(why, "no engine answered"):
			return "engines_failed"
		case strings.HasPrefix(why, "decision overran"):
			return "deadline"
		case strings.HasPrefix(why, "internal error"):
			return "internal_error"
		case strings.HasPrefix(why, "header section above"), strings.HasPrefix(why, "spool"):
			return "message_not_readable"
		}
	}
	return "other"
}

// Attrs are the fixed keys of a decision record.
func Attrs(m *mail.Message, d policy.Decision, took time.Duration) []slog.Attr {
	engines := make([]any, 0, len(d.Verdicts))
	for _, v := range d.Verdicts {
		engines = append(engines, EngineRecord{v.Engine, string(v.Outcome), round(v.Normalized), float64(v.Duration.Microseconds()) / 1000, v.Reason, v.Details})
	}
	var entry any
	if d.Match != nil {
		entry = AllowlistRecord{d.Match.Entry, d.Match.Matched, d.Match.Require, d.Match.Authenticated, d.Match.Why}
	}
	ip := ""
	if m.Env.ClientIP != (netip.Addr{}) {
		ip = m.Env.ClientIP.String()
	}
	return []slog.Attr{
		slog.String("queue_id", m.QueueID),
		slog.String("message_id", m.Get("Message-ID")),
		slog.String("client_ip", ip),
		slog.String("mail_from", m.Env.MailFrom),
		slog.Any("rcpts", m.Env.Rcpts),
		slog.String("action", d.Action.String()),
		slog.String("verdict", string(d.Verdict)),
		slog.Float64("score", d.Score),
		slog.Bool("observe", d.Observe),
		slog.Any("engines", engines),
		slog.Any("allowlist", entry),
		slog.Any("auth", AuthRecord{d.Identity.From, string(d.Identity.SPF), dkimText(d), string(d.Identity.DMARC)}),
		slog.Any("reasons", d.Reasons),
		slog.Float64("took_ms", float64(took.Microseconds())/1000),
	}
}

// EngineRecord is one engine's part of a decision record.
type EngineRecord struct {
	Engine  string   `json:"engine"`
	Outcome string   `json:"outcome"`
	Score   float64  `json:"score"`
	MS      float64  `json:"ms"`
	Reason  string   `json:"reason,omitempty"`
	Details []string `json:"details,omitempty"`
}

// AllowlistRecord is the allowlist part of a decision record.
type AllowlistRecord struct {
	Entry         string `json:"entry"`
	Matched       string `json:"matched"`
	Require       string `json:"require"`
	Authenticated bool   `json:"authenticated"`
	Why           string `json:"why"`
}

// AuthRecord is what was proven about the sender.
type AuthRecord struct {
	From  string `json:"from,omitempty"`
	SPF   string `json:"spf,omitempty"`
	DKIM  string `json:"dkim,omitempty"`
	DMARC string `json:"dmarc,omitempty"`
}

func dkimText(d policy.Decision) string {
	var parts []string
	for _, r := range d.Identity.DKIM {
		parts = append(parts, string(r.Result)+"("+r.Domain+")")
	}
	return strings.Join(parts, ",")
}

func round(f float64) float64 { return float64(int64(f*10+0.5*sign(f))) / 10 }

func sign(f float64) float64 {
	if f < 0 {
		return -1
	}
	return 1
}

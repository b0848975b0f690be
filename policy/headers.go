package policy

import (
	"fmt"
	"strings"

	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/scoring"
)

// Header names fpsafe writes.
const (
	HeaderVerdict = "X-FPSafe-Verdict"
	HeaderReport  = "X-FPSafe-Report"
	HeaderVirus   = "X-FPSafe-Virus"
	// HeaderAuthResults carries what fpsafe proved about the sender (RFC 8601).
	HeaderAuthResults = "Authentication-Results"
)

// maxDetails bounds the rule symbols quoted per engine in X-FPSafe-Report; `fpsafe check`
// and the decision log carry them all.
const maxDetails = 8

// headers builds the fields fpsafe adds: its verdict and report on every message, the
// conventional X-Spam-* fields on tag and quarantine (so that existing Sieve and Exchange
// rules work), and a loud X-FPSafe-Virus whenever an AV engine found something.
func headers(d Decision, s scoring.Summary) []mail.Field {
	verdict := fmt.Sprintf("%s; score=%.1f", d.Verdict, d.Score)
	if d.Observe {
		verdict += "; mode=observe"
	}
	h := []mail.Field{
		{Name: HeaderVerdict, Value: verdict},
		{Name: HeaderReport, Value: Report(d)},
	}
	if len(s.Viruses) > 0 || len(s.Suspicious) > 0 {
		h = append(h, mail.Field{Name: HeaderVirus, Value: strings.Join(append(append([]string{}, s.Viruses...), s.Suspicious...), "; ")})
	}
	if (d.Action == Tag || d.Action == Quarantine) && !d.Observe {
		h = append(h,
			mail.Field{Name: "X-Spam-Flag", Value: "YES"},
			mail.Field{Name: "X-Spam-Score", Value: fmt.Sprintf("%.1f", d.Score)},
			mail.Field{Name: "X-Spam-Status", Value: fmt.Sprintf("Yes, score=%.1f action=%s verdict=%s", d.Score, d.Action, d.Verdict)},
		)
	}
	return h
}

// Report is the X-FPSafe-Report value: each engine's contribution, then the reasons.
func Report(d Decision) string {
	parts := make([]string, 0, len(d.Verdicts)+len(d.Reasons))
	for _, v := range d.Verdicts {
		parts = append(parts, Contribution(v))
	}
	parts = append(parts, d.Reasons...)
	return strings.Join(parts, "; ")
}

// Contribution describes one engine's verdict in a few words, e.g.
// "spamd=spam 15.0/5.0 n=20.0 w=1 118ms [GTUBE,...]".
func Contribution(v scoring.Verdict) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s=%s", v.Engine, v.Outcome)
	if v.Scored {
		fmt.Fprintf(&b, " %.1f/%.1f n=%.1f w=%g", v.Score, v.Threshold, v.Normalized, v.Weight)
	}
	fmt.Fprintf(&b, " %dms", v.Duration.Milliseconds())
	if v.Reason != "" {
		fmt.Fprintf(&b, " (%s)", v.Reason)
	}
	if len(v.Details) > 0 {
		det := v.Details
		more := ""
		if len(det) > maxDetails {
			det, more = det[:maxDetails], fmt.Sprintf(",+%d", len(v.Details)-maxDetails)
		}
		fmt.Fprintf(&b, " [%s%s]", strings.Join(det, ","), more)
	}
	return b.String()
}

package replay

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/policy"
	"github.com/fpsafe/fpsafe/scoring"
)

// Recorded is a scoring.Engine that answers with a verdict recorded earlier instead of
// scanning: a verdict read back from a message's X-FPSafe-Report or X-Spam-* fields
// (HeaderVerdicts), or one a first config's engines gave when a second config with the same
// engines is compared. Run through a scoring.Aggregator it is weighed, size-limited and
// re-classified (suspicious_signatures) under the config being replayed.
type Recorded struct {
	V scoring.Verdict
}

// Name implements scoring.Engine.
func (r Recorded) Name() string { return r.V.Engine }

// Scan implements scoring.Engine: the recorded verdict, whatever the message.
func (r Recorded) Scan(ctx context.Context, _ *mail.Message) (scoring.Verdict, error) {
	if err := ctx.Err(); err != nil {
		return scoring.Verdict{}, err
	}
	return r.V, nil
}

// Where HeaderVerdicts found the verdicts.
const (
	FromReport = "x-fpsafe-report"
	FromXSpam  = "x-spam"
)

// XSpamEngine is the name of the one scored engine that stands for X-Spam-* fields.
const XSpamEngine = "x-spam"

// HeaderVerdicts rebuilds the engine verdicts recorded in m's header. The first (topmost,
// the most recently added) X-FPSafe-Report field with at least one engine contribution
// wins; failing that, X-Spam-Status, X-Spam-Score and X-Spam-Flag make one scored engine
// "x-spam" whose threshold is required= (or 5). from says which ("" when the message
// carries neither: it has no verdict and is decided as unscanned).
func HeaderVerdicts(m *mail.Message) (vs []scoring.Verdict, from string) {
	for _, r := range m.Values(policy.HeaderReport) {
		if vs = ParseReport(r); len(vs) > 0 {
			return vs, FromReport
		}
	}
	if v, ok := xSpamVerdict(m); ok {
		return []scoring.Verdict{v}, FromXSpam
	}
	return nil, ""
}

var (
	contribHead  = regexp.MustCompile(`^([A-Za-z0-9][A-Za-z0-9_.:+-]*)=(clean|spam|suspicious|virus|error|timeout|skipped)(?:\s|$)`)
	contribScore = regexp.MustCompile(`^(-?[0-9.]+(?:e[-+]?[0-9]+)?)/(-?[0-9.]+(?:e[-+]?[0-9]+)?)\s+n=(-?[0-9.]+(?:e[-+]?[0-9]+)?)\s+w=([0-9.e+-]+)(?:\s|$)`)
	contribMS    = regexp.MustCompile(`^([0-9]+)ms(?:\s|$)`)
)

// ParseReport reads the engine contributions of an X-FPSafe-Report value, the inverse of
// policy.Contribution: "spamd=spam 15.0/5.0 n=20.0 w=1 118ms [GTUBE,+3]; clamd=clean 1ms;
// reasons...". Parts that are not contributions (the reasons) are ignored.
func ParseReport(value string) []scoring.Verdict {
	var vs []scoring.Verdict
	for _, part := range splitTop(value, ';') {
		if v, ok := parseContribution(strings.TrimSpace(part)); ok {
			vs = append(vs, v)
		}
	}
	return vs
}

func parseContribution(s string) (scoring.Verdict, bool) {
	m := contribHead.FindStringSubmatch(s)
	if m == nil {
		return scoring.Verdict{}, false
	}
	v := scoring.Verdict{Engine: m[1], Outcome: scoring.Outcome(m[2]), Weight: 1}
	rest := strings.TrimSpace(s[len(m[0]):])
	if sm := contribScore.FindStringSubmatch(rest); sm != nil {
		v.Scored = true
		v.Score, _ = strconv.ParseFloat(sm[1], 64)
		v.Threshold, _ = strconv.ParseFloat(sm[2], 64)
		v.Normalized, _ = strconv.ParseFloat(sm[3], 64)
		v.Weight, _ = strconv.ParseFloat(sm[4], 64)
		rest = strings.TrimSpace(rest[len(sm[0]):])
	}
	if ms := contribMS.FindStringSubmatch(rest); ms != nil {
		n, _ := strconv.Atoi(ms[1])
		v.Duration = time.Duration(n) * time.Millisecond
		rest = strings.TrimSpace(rest[len(ms[0]):])
	}
	if strings.HasPrefix(rest, "(") {
		if end := closing(rest, '(', ')'); end > 0 {
			v.Reason, rest = rest[1:end], strings.TrimSpace(rest[end+1:])
		}
	}
	if strings.HasPrefix(rest, "[") {
		if end := closing(rest, '[', ']'); end > 0 {
			for _, d := range strings.Split(rest[1:end], ",") {
				if d = strings.TrimSpace(d); d != "" && !isMoreMarker(d) {
					v.Details = append(v.Details, d)
				}
			}
		}
	}
	return v, true
}

// isMoreMarker matches the "+3" that policy.Contribution writes for details left out.
func isMoreMarker(d string) bool {
	if len(d) < 2 || d[0] != '+' {
		return false
	}
	_, err := strconv.Atoi(d[1:])
	return err == nil
}

// closing returns the index of the bracket that closes s[0], or -1.
func closing(s string, open, close byte) int {
	depth := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case open:
			depth++
		case close:
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

// splitTop splits s at sep outside parentheses and brackets.
func splitTop(s string, sep byte) []string {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(', '[':
			depth++
		case ')', ']':
			if depth > 0 {
				depth--
			}
		case sep:
			if depth == 0 {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, s[start:])
}

var (
	xsScore    = regexp.MustCompile(`(?i)\bscore=(-?[0-9]+(?:\.[0-9]+)?)`)
	xsRequired = regexp.MustCompile(`(?i)\brequired=(-?[0-9]+(?:\.[0-9]+)?)`)
	xsTests    = regexp.MustCompile(`(?i)\btests=([^\s]*)`)
	xsNumbers  = regexp.MustCompile(`^\s*(-?[0-9]+(?:\.[0-9]+)?)(?:\s*/\s*(-?[0-9]+(?:\.[0-9]+)?))?`)
)

// xSpamVerdict reads SpamAssassin-style fields (the topmost of each):
//
//	X-Spam-Status: Yes, score=7.3 required=5.0 tests=BAYES_99,... autolearn=no
//	X-Spam-Score: 7.3            (or rspamd's "7.3 / 15.0")
//	X-Spam-Flag: YES
//
// The score comes from X-Spam-Status, else X-Spam-Score; the threshold from required=,
// else X-Spam-Score's "/ n", else 5. The outcome is spam when X-Spam-Flag says YES (or,
// without it, when X-Spam-Status starts with Yes, or, without either, when the score
// reaches the threshold), clean otherwise. Only a flag and no score gives an unscored verdict.
func xSpamVerdict(m *mail.Message) (scoring.Verdict, bool) {
	status, scoreF, flag := first(m, "X-Spam-Status"), first(m, "X-Spam-Score"), first(m, "X-Spam-Flag")
	v := scoring.Verdict{Engine: XSpamEngine, Threshold: scoring.Scale, Weight: 1}
	haveScore := false
	if sm := xsScore.FindStringSubmatch(status); sm != nil {
		v.Score, _ = strconv.ParseFloat(sm[1], 64)
		haveScore = true
	}
	if sm := xsNumbers.FindStringSubmatch(scoreF); sm != nil {
		if !haveScore {
			v.Score, _ = strconv.ParseFloat(sm[1], 64)
			haveScore = true
		}
		if sm[2] != "" {
			v.Threshold, _ = strconv.ParseFloat(sm[2], 64)
		}
	}
	if sm := xsRequired.FindStringSubmatch(status); sm != nil {
		v.Threshold, _ = strconv.ParseFloat(sm[1], 64)
	}
	if v.Threshold <= 0 {
		v.Threshold = scoring.Scale
	}
	if sm := xsTests.FindStringSubmatch(status); sm != nil && sm[1] != "" && sm[1] != "none" {
		v.Details = strings.Split(strings.TrimSuffix(sm[1], ","), ",")
	}
	yes := func(s string) bool {
		s = strings.ToLower(strings.TrimSpace(s))
		return strings.HasPrefix(s, "yes") || s == "true"
	}
	switch {
	case flag != "":
		v.Outcome = spamOrClean(yes(flag))
	case status != "":
		v.Outcome = spamOrClean(yes(status))
	case haveScore:
		v.Outcome = spamOrClean(v.Score >= v.Threshold)
	default:
		return scoring.Verdict{}, false
	}
	if haveScore {
		v.Scored = true
		v.Normalized = scoring.Normalize(v.Score, v.Threshold)
	} else {
		v.Threshold = 0
	}
	return v, true
}

func spamOrClean(spam bool) scoring.Outcome {
	if spam {
		return scoring.Spam
	}
	return scoring.Clean
}

func first(m *mail.Message, name string) string {
	if vs := m.Values(name); len(vs) > 0 {
		return vs[0]
	}
	return ""
}

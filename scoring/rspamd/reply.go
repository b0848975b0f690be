package rspamd

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/fpsafe/fpsafe/scoring"
)

// maxReply bounds how many bytes of one reply are read, so that a server speaking garbage
// cannot make the client buffer without end. Real /checkv2 replies are a few KB.
const maxReply = 1 << 20

// reply is the part of rspamd's /checkv2 JSON that fpsafe uses. Unknown keys (urls,
// emails, milter, messages, time_real, per-symbol description, ...) are ignored.
type reply struct {
	IsSkipped     bool              `json:"is_skipped"`
	Score         *float64          `json:"score"`
	RequiredScore float64           `json:"required_score"`
	Action        *string           `json:"action"`
	Symbols       map[string]symbol `json:"symbols"`
	Error         string            `json:"error"`
}

// symbol is one rule that matched.
type symbol struct {
	Name    string   `json:"name"`
	Score   float64  `json:"score"`
	Options []string `json:"options"`
}

// outcomes maps rspamd's actions onto fpsafe outcomes. rspamd's own thresholds for add
// header and rewrite subject already say "spam". Greylist (score 4 of 15 by default) and
// soft reject are rspamd's "not sure, try later" and fpsafe never tempfails: the message
// counts as clean, and its score still weighs in the combined score. Treating them as
// doubtful tagged about 40 % of the ham in the end-to-end corpus (envelope recipients
// unlike To:, old Date: fields), which is what a false-positive-safe filter must not do.
var outcomes = map[string]scoring.Outcome{
	"no action":       scoring.Clean,
	"greylist":        scoring.Clean,
	"soft reject":     scoring.Clean,
	"add header":      scoring.Spam,
	"rewrite subject": scoring.Spam,
	"reject":          scoring.Spam,
}

// Parse errors that tests and callers may tell apart.
var (
	errNoAction = errors.New("reply has no action")
	errNoScore  = errors.New("reply has no score")
	errSkipped  = errors.New("rspamd skipped the message without a verdict")
)

// parseReply turns a /checkv2 body into a verdict. A reply that does not carry a known
// action and a score is an error: fpsafe never guesses Clean.
func parseReply(b []byte) (scoring.Verdict, error) {
	var r reply
	if err := json.Unmarshal(b, &r); err != nil {
		return scoring.Verdict{}, fmt.Errorf("bad reply: %w", err)
	}
	if r.Error != "" {
		return scoring.Verdict{}, fmt.Errorf("rspamd error: %s", r.Error)
	}
	if r.Action == nil {
		return scoring.Verdict{}, errNoAction
	}
	out, ok := outcomes[*r.Action]
	if !ok {
		return scoring.Verdict{}, fmt.Errorf("unknown action %q", truncate(*r.Action, 64))
	}
	if r.Score == nil {
		return scoring.Verdict{}, errNoScore
	}
	if math.IsNaN(*r.Score) || math.IsInf(*r.Score, 0) || math.IsNaN(r.RequiredScore) {
		return scoring.Verdict{}, fmt.Errorf("bad score %v / %v", *r.Score, r.RequiredScore)
	}
	// is_skipped with an action other than "no action" is a pre-result (GTUBE, a settings
	// rule, a forced action): a real verdict. Skipped with "no action" means nothing ran.
	if r.IsSkipped && out == scoring.Clean {
		return scoring.Verdict{}, errSkipped
	}
	return scoring.Verdict{
		Outcome:   out,
		Score:     *r.Score,
		Threshold: r.RequiredScore,
		Details:   append([]string{"action=" + *r.Action}, details(r.Symbols)...),
	}, nil
}

// details lists the matched symbols as "NAME(score)", sorted by name for determinism.
func details(syms map[string]symbol) []string {
	if len(syms) == 0 {
		return nil
	}
	d := make([]string, 0, len(syms))
	for key, s := range syms {
		name := s.Name
		if name == "" {
			name = key
		}
		d = append(d, fmt.Sprintf("%s(%.2f)", name, s.Score))
	}
	slices.Sort(d)
	return d
}

// errorField returns the "error" member of a JSON error reply, or "".
func errorField(b []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &e) != nil {
		return ""
	}
	return truncate(e.Error, 200)
}

package scoring

import (
	"fmt"
	"strings"
)

// Summary is the aggregate of one message's verdicts, computed by Summarize. It is what
// policy weighs against its thresholds.
type Summary struct {
	Score      float64  // weighted mean of the normalized scores of the engines that scored
	Scorers    int      // engines that gave a score
	SpamVotes  int      // engines whose outcome is spam
	Viruses    []string // virus names from AV hits that are not of a false-positive family
	Suspicious []string // engine: detail of suspicious outcomes
	Answered   int      // engines that gave a verdict
	Missing    []string // engine(outcome: reason) for engines that gave none
}

// Summarize combines verdicts. It is pure: the same verdicts give the same summary.
func Summarize(vs []Verdict) Summary {
	var s Summary
	var wsum, sum float64
	for _, v := range vs {
		if !v.Outcome.Answered() {
			s.Missing = append(s.Missing, missing(v))
			continue
		}
		s.Answered++
		switch v.Outcome {
		case Spam:
			s.SpamVotes++
		case Virus:
			s.Viruses = append(s.Viruses, v.Engine+": "+strings.Join(Signatures(v.Details), ","))
		case Suspicious:
			s.Suspicious = append(s.Suspicious, v.Engine+": "+strings.Join(Signatures(v.Details), ","))
		}
		if v.Scored && v.Weight > 0 {
			s.Scorers++
			wsum += v.Weight
			sum += v.Weight * v.Normalized
		}
	}
	if wsum > 0 {
		s.Score = sum / wsum
	}
	return s
}

func missing(v Verdict) string {
	if v.Reason == "" {
		return fmt.Sprintf("%s(%s)", v.Engine, v.Outcome)
	}
	return fmt.Sprintf("%s(%s: %s)", v.Engine, v.Outcome, v.Reason)
}

// Signatures keeps the details that name what was found (signature names, rule symbols)
// and drops the key=value metadata some engines add, such as an ICAP server's
// "istag=..." or rspamd's "action=...".
func Signatures(details []string) []string {
	out := details[:0:0]
	for _, d := range details {
		if !strings.Contains(d, "=") {
			out = append(out, d)
		}
	}
	return out
}

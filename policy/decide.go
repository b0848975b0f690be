package policy

import (
	"fmt"
	"strings"

	"github.com/fpsafe/fpsafe/allowlist"
	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/scoring"
)

// Input is everything Decide looks at. It is plain data, so decisions can be replayed.
type Input struct {
	Verdicts []scoring.Verdict // one per configured engine, failures included
	Identity allowlist.Identity
	Match    *allowlist.Match // nil when no allowlist entry claimed the message
	Header   []mail.Field     // the incoming header section, for removals and the subject
	Failure  string           // set when the pipeline itself failed (panic, deadline): unscanned

	// AuthservID is fpsafe's authserv-id: incoming Authentication-Results fields that claim
	// it are forgeries and are removed. AuthResults is the value of the field fpsafe adds.
	AuthservID  string
	AuthResults string
}

// Decide turns an Input into a Decision. It is pure and total: every input yields one of
// the three actions, and an authenticated allowlisted sender is never quarantined.
//
// Quarantine needs a virus verdict, or a combined score at or above quarantine_score that
// at least quarantine_min_engines engines agree is spam. Tagging needs the combined score
// at or above tag_score, or any engine saying spam, suspicious or virus. When no engine
// gave an answer, the message is unscanned: delivered, and not flagged as spam.
func Decide(in Input, cfg Config) Decision {
	s := scoring.Summarize(in.Verdicts)
	d := Decision{Score: round1(s.Score), Verdicts: in.Verdicts, Identity: in.Identity, Match: in.Match}
	d.Remove = removals(in.Header, cfg, in.AuthservID)

	switch {
	case in.Failure != "":
		d.unscanned(in.Failure)
	case len(in.Verdicts) == 0:
		d.unscanned("no engines configured")
	case s.Answered == 0:
		d.unscanned("no engine answered: " + strings.Join(s.Missing, ", "))
	default:
		d.judge(s, cfg)
	}
	if in.Match != nil && !in.Match.Authenticated {
		d.Reasons = append(d.Reasons, fmt.Sprintf("no bypass: entry %s matched %s but %s", in.Match.Entry, in.Match.Matched, in.Match.Why))
	}
	d.Observe = cfg.Mode == ModeObserve
	if d.Observe && d.Action != Deliver {
		d.Reasons = append(d.Reasons, "observe mode: would "+d.Action.String()+"; delivered unchanged")
	}
	if d.Action == Tag && cfg.SubjectPrefix != "" && !d.Observe {
		d.Subject = prefixed(in.Header, cfg.SubjectPrefix)
	}
	d.Add = headers(d, s)
	if in.AuthResults != "" {
		d.Add = append([]mail.Field{{Name: HeaderAuthResults, Value: in.AuthResults}}, d.Add...)
	}
	return d
}

func (d *Decision) unscanned(why string) {
	d.Action, d.Verdict, d.Score = Deliver, VerdictUnscanned, 0
	d.Reasons = append(d.Reasons, "unscanned: "+why)
}

// judge applies the thresholds to a summary with at least one answer.
func (d *Decision) judge(s scoring.Summary, cfg Config) {
	var quarantine, tag []string
	if len(s.Viruses) > 0 {
		quarantine = append(quarantine, "virus "+strings.Join(s.Viruses, "; "))
	}
	if s.Score >= cfg.QuarantineScore {
		if s.SpamVotes >= cfg.QuarantineMinEngines {
			quarantine = append(quarantine, fmt.Sprintf("score %.1f >= quarantine_score %g with %d engines agreeing", d.Score, cfg.QuarantineScore, s.SpamVotes))
		} else {
			tag = append(tag, fmt.Sprintf("score %.1f >= quarantine_score %g but only %d of quarantine_min_engines %d engines say spam", d.Score, cfg.QuarantineScore, s.SpamVotes, cfg.QuarantineMinEngines))
		}
	} else if s.Score >= cfg.TagScore {
		tag = append(tag, fmt.Sprintf("score %.1f >= tag_score %g", d.Score, cfg.TagScore))
	}
	if s.SpamVotes > 0 && len(tag) == 0 && len(quarantine) == 0 {
		tag = append(tag, fmt.Sprintf("%d engine(s) say spam", s.SpamVotes))
	}
	if len(s.Suspicious) > 0 {
		tag = append(tag, "suspicious "+strings.Join(s.Suspicious, "; "))
	}
	if len(s.Missing) > 0 {
		d.Reasons = append(d.Reasons, "not scanned by "+strings.Join(s.Missing, ", "))
	}

	bypass := d.Match != nil && d.Match.Authenticated
	switch {
	case bypass && len(quarantine)+len(tag) > 0:
		d.Action, d.Verdict = Tag, VerdictAllowlisted
		d.Reasons = append(d.Reasons, fmt.Sprintf("allowlisted by entry %s (%s): quarantine bypassed, tagged because: %s",
			d.Match.Entry, d.Match.Why, strings.Join(append(quarantine, tag...), "; ")))
	case bypass:
		d.Action, d.Verdict = Deliver, VerdictAllowlisted
		d.Reasons = append(d.Reasons, fmt.Sprintf("allowlisted by entry %s (%s)", d.Match.Entry, d.Match.Why))
	case len(quarantine) > 0:
		d.Action, d.Verdict = Quarantine, VerdictQuarantined
		d.Quarantine = "fpsafe: " + quarantine[0]
		d.Reasons = append(d.Reasons, "quarantine: "+strings.Join(quarantine, "; "))
	case len(tag) > 0:
		d.Action, d.Verdict = Tag, VerdictTagged
		d.Reasons = append(d.Reasons, "tag: "+strings.Join(tag, "; "))
	default:
		d.Action, d.Verdict = Deliver, VerdictClean
	}
}

// removals lists the incoming fields that fpsafe strips, highest index first per name, so
// that deleting one never shifts the index of another still to be deleted.
func removals(h []mail.Field, cfg Config, authservID string) []HeaderRef {
	var refs []HeaderRef
	seen := map[string]int{}
	for _, f := range h {
		k := strings.ToLower(f.Name)
		seen[k]++
		if cfg.stripped(f.Name) || forgedAuthResults(f, authservID) {
			refs = append(refs, HeaderRef{Name: f.Name, Index: seen[k], Value: f.Text()})
		}
	}
	for i, j := 0, len(refs)-1; i < j; i, j = i+1, j-1 {
		refs[i], refs[j] = refs[j], refs[i]
	}
	return refs
}

// prefixed returns the Subject with prefix in front, or nil when it is already there.
func prefixed(h []mail.Field, prefix string) *string {
	subj := ""
	for _, f := range h {
		if strings.EqualFold(f.Name, "Subject") {
			subj = f.Text()
			break
		}
	}
	if strings.HasPrefix(subj, prefix) {
		return nil
	}
	v := strings.TrimSpace(prefix + " " + subj)
	return &v
}

func round1(f float64) float64 {
	if f < 0 {
		return -float64(int64(-f*10+0.5)) / 10
	}
	return float64(int64(f*10+0.5)) / 10
}

// forgedAuthResults reports whether f is an Authentication-Results field that claims to
// come from fpsafe (its authserv-id, RFC 8601 section 5): only fpsafe may write those.
func forgedAuthResults(f mail.Field, authservID string) bool {
	if authservID == "" || !strings.EqualFold(f.Name, HeaderAuthResults) {
		return false
	}
	id, _, _ := strings.Cut(f.Text(), ";")
	if i := strings.IndexAny(id, " \t("); i >= 0 { // "id 1" (version) or "id (comment)"
		id = id[:i]
	}
	return strings.EqualFold(strings.TrimSpace(id), authservID)
}

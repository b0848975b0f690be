package replay

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/fpsafe/fpsafe/policy"
	"github.com/fpsafe/fpsafe/scoring"
)

// Report is what a replay found. Its JSON form is what `fpsafe replay --format json` prints.
type Report struct {
	Path      string          `json:"path"`
	Kind      string          `json:"kind"` // maildir, mbox, eml or file
	NoEngines bool            `json:"no_engines"`
	Configs   []ConfigSummary `json:"configs"`

	Messages    int `json:"messages"`     // messages decided (malformed ones included)
	ParseErrors int `json:"parse_errors"` // malformed messages, decided all the same
	Unreadable  int `json:"unreadable"`   // messages that could not be read (open or I/O error): not decided
	// Recorded counts, with --no-engines, where each message's verdicts came from:
	// x-fpsafe-report, x-spam, or none (decided as unscanned).
	Recorded map[string]int `json:"recorded,omitempty"`

	ElapsedSeconds    float64       `json:"elapsed_seconds"`
	MessagesPerSecond float64       `json:"messages_per_second"`
	Elapsed           time.Duration `json:"-"`

	// Flagged are the messages the first config tags or quarantines: quarantined first, then
	// by score, highest first.
	Flagged []Entry `json:"flagged"`
	// Changed are the messages whose action differs between the two configs (empty with one),
	// grouped by change; ChangeCounts counts each change.
	Changed      []Change      `json:"changed"`
	ChangeCounts []ChangeCount `json:"change_counts"`
	// Problems are the malformed and unreadable messages, in source order.
	Problems []Problem `json:"problems"`
}

// ConfigSummary is what one config decided over the whole source.
type ConfigSummary struct {
	Name                 string  `json:"name"`
	TagScore             float64 `json:"tag_score"`
	QuarantineScore      float64 `json:"quarantine_score"`
	QuarantineMinEngines int     `json:"quarantine_min_engines"`
	Mode                 string  `json:"mode"`
	// Actions counts deliver, tag and quarantine; Verdicts clean, tagged, quarantined,
	// unscanned and allowlisted. Every key is present.
	Actions  map[string]int `json:"actions"`
	Verdicts map[string]int `json:"verdicts"`
	// Engines counts each engine's outcomes: engine → outcome → messages.
	Engines   map[string]map[string]int `json:"engines"`
	Histogram Histogram                 `json:"histogram"`
}

// Histogram counts combined scores in bins of Width over [Min, Max]; scores outside are
// counted in the first or last bin. Unscanned messages have no score and are not in it.
type Histogram struct {
	Min       float64 `json:"min"`
	Max       float64 `json:"max"`
	Width     float64 `json:"width"`
	Bins      []Bin   `json:"bins"`
	Unscanned int     `json:"unscanned"`
}

// Bin is one histogram bin, [Lo, Hi), split by action.
type Bin struct {
	Lo         float64 `json:"lo"`
	Hi         float64 `json:"hi"`
	Deliver    int     `json:"deliver"`
	Tag        int     `json:"tag"`
	Quarantine int     `json:"quarantine"`
}

// Total is the bin's count.
func (b Bin) Total() int { return b.Deliver + b.Tag + b.Quarantine }

// The histogram's range: fpsafe's normalized scale (scoring.MinNormalized..MaxNormalized).
const (
	HistMin   = scoring.MinNormalized
	HistMax   = scoring.MaxNormalized
	HistWidth = 1.0
)

// Entry is one message and its decision.
type Entry struct {
	Index     int      `json:"index"`  // position in the source, from 1
	Source    string   `json:"source"` // file relative to the source, or "mbox#N"
	MessageID string   `json:"message_id"`
	Subject   string   `json:"subject"`
	Sender    string   `json:"sender"` // the From: field
	Action    string   `json:"action"`
	Verdict   string   `json:"verdict"`
	Score     float64  `json:"score"`
	Reasons   []string `json:"reasons"`
}

// Outcome is a decision in short.
type Outcome struct {
	Action  string   `json:"action"`
	Verdict string   `json:"verdict"`
	Score   float64  `json:"score"`
	Reasons []string `json:"reasons"`
}

// Change is a message whose action differs between the configs.
type Change struct {
	Index     int     `json:"index"`
	Source    string  `json:"source"`
	MessageID string  `json:"message_id"`
	Subject   string  `json:"subject"`
	Sender    string  `json:"sender"`
	From      Outcome `json:"from"` // under the first config
	To        Outcome `json:"to"`   // under the second
}

// ChangeCount counts the messages that go From one action To another.
type ChangeCount struct {
	From  string `json:"from"`
	To    string `json:"to"`
	Count int    `json:"count"`
}

// Problem is a malformed message (decided) or a file that could not be read (not decided).
type Problem struct {
	Index   int    `json:"index"`
	Source  string `json:"source"`
	Problem string `json:"problem"`
	Decided bool   `json:"decided"`
}

func newReport(src *Source, opt Options) *Report {
	r := &Report{Path: src.Path, Kind: src.Kind, NoEngines: opt.NoEngines,
		Flagged: []Entry{}, Changed: []Change{}, ChangeCounts: []ChangeCount{}, Problems: []Problem{}}
	if opt.NoEngines {
		r.Recorded = map[string]int{FromReport: 0, FromXSpam: 0, "none": 0}
	}
	for _, c := range opt.Configs {
		pc := c.Pipeline.Config
		cs := ConfigSummary{Name: c.Name, TagScore: pc.TagScore, QuarantineScore: pc.QuarantineScore,
			QuarantineMinEngines: pc.QuarantineMinEngines, Mode: pc.Mode,
			Actions:   map[string]int{},
			Verdicts:  map[string]int{},
			Engines:   map[string]map[string]int{},
			Histogram: Histogram{Min: HistMin, Max: HistMax, Width: HistWidth},
		}
		for _, a := range []policy.Action{policy.Deliver, policy.Tag, policy.Quarantine} {
			cs.Actions[a.String()] = 0
		}
		for _, v := range []policy.Verdict{policy.VerdictClean, policy.VerdictTagged, policy.VerdictQuarantined, policy.VerdictUnscanned, policy.VerdictAllowlisted} {
			cs.Verdicts[string(v)] = 0
		}
		for lo := HistMin; lo < HistMax; lo += HistWidth {
			cs.Histogram.Bins = append(cs.Histogram.Bins, Bin{Lo: lo, Hi: lo + HistWidth})
		}
		r.Configs = append(r.Configs, cs)
	}
	return r
}

// add counts one message.
func (r *Report) add(o outcome) {
	if o.unread {
		r.Unreadable++
		r.Problems = append(r.Problems, Problem{Index: o.index, Source: o.name, Problem: o.problem})
		return
	}
	r.Messages++
	if o.problem != "" {
		r.ParseErrors++
		r.Problems = append(r.Problems, Problem{Index: o.index, Source: o.name, Problem: o.problem, Decided: true})
	}
	if r.Recorded != nil {
		k := o.recorded
		if k == "" {
			k = "none"
		}
		r.Recorded[k]++
	}
	for i, d := range o.decisions {
		cs := &r.Configs[i]
		cs.Actions[d.Action.String()]++
		cs.Verdicts[string(d.Verdict)]++
		for _, v := range d.Verdicts {
			if cs.Engines[v.Engine] == nil {
				cs.Engines[v.Engine] = map[string]int{}
			}
			cs.Engines[v.Engine][string(v.Outcome)]++
		}
		cs.Histogram.add(d)
	}
	d := o.decisions[0]
	if d.Action != policy.Deliver {
		r.Flagged = append(r.Flagged, Entry{Index: o.index, Source: o.name, MessageID: o.messageID, Subject: o.subject, Sender: o.from,
			Action: d.Action.String(), Verdict: string(d.Verdict), Score: d.Score, Reasons: nonNil(d.Reasons)})
	}
	if len(o.decisions) > 1 && o.decisions[1].Action != d.Action {
		r.Changed = append(r.Changed, Change{Index: o.index, Source: o.name, MessageID: o.messageID, Subject: o.subject, Sender: o.from,
			From: short(d), To: short(o.decisions[1])})
	}
}

func (h *Histogram) add(d policy.Decision) {
	if d.Verdict == policy.VerdictUnscanned {
		h.Unscanned++
		return
	}
	i := int(math.Floor((d.Score - h.Min) / h.Width))
	i = min(max(i, 0), len(h.Bins)-1)
	switch d.Action {
	case policy.Quarantine:
		h.Bins[i].Quarantine++
	case policy.Tag:
		h.Bins[i].Tag++
	default:
		h.Bins[i].Deliver++
	}
}

func short(d policy.Decision) Outcome {
	return Outcome{Action: d.Action.String(), Verdict: string(d.Verdict), Score: d.Score, Reasons: nonNil(d.Reasons)}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

var actionRank = map[string]int{"deliver": 0, "tag": 1, "quarantine": 2}

// finish sorts the lists and computes the rate.
func (r *Report) finish(elapsed time.Duration) {
	r.Elapsed = elapsed
	r.ElapsedSeconds = math.Round(elapsed.Seconds()*1000) / 1000
	if s := elapsed.Seconds(); s > 0 {
		r.MessagesPerSecond = math.Round(float64(r.Messages)/s*10) / 10
	}
	sort.Slice(r.Flagged, func(i, j int) bool {
		a, b := r.Flagged[i], r.Flagged[j]
		if a.Action != b.Action {
			return actionRank[a.Action] > actionRank[b.Action]
		}
		if a.Score != b.Score {
			return a.Score > b.Score
		}
		return a.Index < b.Index
	})
	sort.Slice(r.Changed, func(i, j int) bool {
		a, b := r.Changed[i], r.Changed[j]
		if a.From.Action != b.From.Action {
			return actionRank[a.From.Action] < actionRank[b.From.Action]
		}
		if a.To.Action != b.To.Action {
			return actionRank[a.To.Action] < actionRank[b.To.Action]
		}
		return a.Index < b.Index
	})
	for _, c := range r.Changed {
		if n := len(r.ChangeCounts); n > 0 && r.ChangeCounts[n-1].From == c.From.Action && r.ChangeCounts[n-1].To == c.To.Action {
			r.ChangeCounts[n-1].Count++
			continue
		}
		r.ChangeCounts = append(r.ChangeCounts, ChangeCount{From: c.From.Action, To: c.To.Action, Count: 1})
	}
	sort.Slice(r.Problems, func(i, j int) bool { return r.Problems[i].Index < r.Problems[j].Index })
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report for a person: the counts, then the changed messages (with two
// configs) and the flagged ones, then the problems.
func (r *Report) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	p := ew.printf
	what := ""
	if r.NoEngines {
		what = ", --no-engines: verdicts from the messages' X-FPSafe-Report / X-Spam-* fields"
	}
	p("replay of %s (%s): %d messages%s\n", r.Path, r.Kind, r.Messages, what)
	letters := "AB"
	for i, c := range r.Configs {
		p("config %c: %s (tag_score %g, quarantine_score %g, quarantine_min_engines %d%s)\n", letters[i], c.Name,
			c.TagScore, c.QuarantineScore, c.QuarantineMinEngines, modeNote(c.Mode))
	}
	p("\n")
	row := func(label string, get func(ConfigSummary) int) {
		p("  %-13s", label)
		for _, c := range r.Configs {
			p(" %7d", get(c))
		}
		p("\n")
	}
	if len(r.Configs) > 1 {
		p("  %-13s %7s %7s\n", "", "A", "B")
	}
	for _, a := range []string{"deliver", "tag", "quarantine"} {
		row(a, func(c ConfigSummary) int { return c.Actions[a] })
	}
	p("  by verdict:\n")
	for _, v := range []string{"clean", "tagged", "quarantined", "unscanned", "allowlisted"} {
		row("  "+v, func(c ConfigSummary) int { return c.Verdicts[v] })
	}
	if r.Recorded != nil {
		p("  verdicts from: X-FPSafe-Report %d, X-Spam-* %d, none (unscanned) %d\n", r.Recorded[FromReport], r.Recorded[FromXSpam], r.Recorded["none"])
	}
	if len(r.Configs[0].Engines) > 0 {
		p("  engine outcomes (A):\n")
		for _, name := range sortedKeys(r.Configs[0].Engines) {
			outs := r.Configs[0].Engines[name]
			var parts []string
			for _, o := range sortedKeys(outs) {
				parts = append(parts, fmt.Sprintf("%s %d", o, outs[o]))
			}
			p("    %-11s %s\n", name, strings.Join(parts, ", "))
		}
	}
	p("  parse errors  %7d (malformed, decided all the same)\n", r.ParseErrors)
	if r.Unreadable > 0 {
		p("  unreadable    %7d (not decided)\n", r.Unreadable)
	}
	p("  %d messages in %.3f s: %.0f msg/s\n", r.Messages, r.Elapsed.Seconds(), r.MessagesPerSecond)

	if len(r.Configs) > 1 {
		p("\nchanged: %d messages", len(r.Changed))
		for i, c := range r.ChangeCounts {
			sep := ", "
			if i == 0 {
				sep = " ("
			}
			p("%s%s → %s %d", sep, c.From, c.To, c.Count)
		}
		if len(r.ChangeCounts) > 0 {
			p(")")
		}
		p("\n")
		for _, c := range r.Changed {
			score := fmt.Sprintf("%5.1f", c.To.Score)
			if c.From.Score != c.To.Score {
				score = fmt.Sprintf("%.1f→%.1f", c.From.Score, c.To.Score)
			}
			p("  %-10s → %-10s %s  %s  %s  %q\n", c.From.Action, c.To.Action, score, c.Source, c.MessageID, c.Subject)
			for _, why := range c.To.Reasons {
				p("      B: %s\n", why)
			}
		}
	}
	p("\n%s: %d messages\n", flaggedTitle(len(r.Configs)), len(r.Flagged))
	for _, e := range r.Flagged {
		p("  %-10s %5.1f  %s  %s  %q\n", e.Action, e.Score, e.Source, e.MessageID, e.Subject)
		for _, why := range e.Reasons {
			p("      %s\n", why)
		}
	}
	if len(r.Problems) > 0 {
		p("\nproblems: %d\n", len(r.Problems))
		for _, pr := range r.Problems {
			what := "decided"
			if !pr.Decided {
				what = "not decided"
			}
			p("  %s: %s (%s)\n", pr.Source, pr.Problem, what)
		}
	}
	return ew.err
}

func flaggedTitle(configs int) string {
	if configs > 1 {
		return "tagged or quarantined under A"
	}
	return "tagged or quarantined"
}

func modeNote(mode string) string {
	if mode == policy.ModeObserve {
		return ", mode observe"
	}
	return ""
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}

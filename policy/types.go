// Package policy turns what the engines said, who the sender provably is and whether an
// allowlist entry matched into one Decision: deliver, tag or quarantine. Decide is a pure
// function; Pipeline is the concurrent orchestration that feeds it, shared by `fpsafe
// serve`, `fpsafe check` and replay. Reject, discard and tempfail cannot be expressed here:
// the mail must get through.
package policy

import (
	"encoding/json"
	"fmt"

	"github.com/fpsafe/fpsafe/allowlist"
	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/scoring"
)

// Action is what happens to the message. There are exactly three, and every one of them
// delivers or keeps the message: there is no value for reject, discard or tempfail.
type Action uint8

// The actions.
const (
	Deliver    Action = iota // delivered unchanged but for fpsafe's own headers
	Tag                      // delivered with spam headers (and an optional subject prefix)
	Quarantine               // kept in the MTA's hold queue, releasable
)

var actionNames = [...]string{"deliver", "tag", "quarantine"}

// String returns the action's name.
func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// MarshalText writes the action's name.
func (a Action) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// Verdict is the one-word summary written into X-FPSafe-Verdict.
type Verdict string

// The verdicts.
const (
	VerdictClean       Verdict = "clean"
	VerdictTagged      Verdict = "tagged"
	VerdictQuarantined Verdict = "quarantined"
	VerdictUnscanned   Verdict = "unscanned"   // no engine could give an answer: delivered, never flagged as spam
	VerdictAllowlisted Verdict = "allowlisted" // an authenticated allowlisted sender: never quarantined
)

// HeaderRef names one occurrence of a header field: Index counts fields of that name
// (case-insensitive) from 1, as the milter protocol's change-header does.
type HeaderRef struct {
	Name  string `json:"name"`
	Index int    `json:"index"`
	Value string `json:"value"` // the value being removed, for the record
}

// Decision is what fpsafe does with one message, and why.
type Decision struct {
	Action     Action             `json:"action"`
	Verdict    Verdict            `json:"verdict"`
	Score      float64            `json:"score"`
	Reasons    []string           `json:"reasons"`
	Verdicts   []scoring.Verdict  `json:"-"`
	Identity   allowlist.Identity `json:"identity"`
	Match      *allowlist.Match   `json:"-"`
	Remove     []HeaderRef        `json:"headers_removed"`
	Add        []mail.Field       `json:"-"`
	Subject    *string            `json:"subject,omitempty"` // the new Subject value, when a prefix was added
	Quarantine string             `json:"quarantine_reason,omitempty"`
	// Observe is set in observe mode: Action is what enforce mode would do, but the milter
	// only writes the X-FPSafe-* fields (no quarantine, no subject or X-Spam-* change).
	Observe bool `json:"observe,omitempty"`
}

// Enforced reports whether the action is carried out: false in observe mode.
func (d Decision) Enforced() bool { return !d.Observe }

// jsonVerdict is the per-engine form `fpsafe check` prints.
type jsonVerdict struct {
	Engine     string   `json:"engine"`
	Outcome    string   `json:"outcome"`
	Score      float64  `json:"score"`
	Threshold  float64  `json:"threshold,omitempty"`
	Normalized float64  `json:"normalized"`
	Weight     float64  `json:"weight"`
	Details    []string `json:"details"`
	Reason     string   `json:"reason,omitempty"`
	MS         float64  `json:"ms"`
}

// MarshalJSON prints the decision in the stable shape `fpsafe check` documents.
func (d Decision) MarshalJSON() ([]byte, error) {
	type plain Decision
	vs := make([]jsonVerdict, 0, len(d.Verdicts))
	for _, v := range d.Verdicts {
		vs = append(vs, jsonVerdict{v.Engine, string(v.Outcome), v.Score, v.Threshold, v.Normalized,
			v.Weight, nonNil(v.Details), v.Reason, float64(v.Duration.Microseconds()) / 1000})
	}
	added := make([]map[string]string, 0, len(d.Add))
	for _, f := range d.Add {
		added = append(added, map[string]string{"name": f.Name, "value": f.Value})
	}
	var entry any
	if d.Match != nil {
		entry = d.Match.Entry
	}
	return json.Marshal(struct {
		plain
		Verdicts  []jsonVerdict       `json:"verdicts"`
		Allowlist any                 `json:"allowlist"`
		Match     *allowlist.Match    `json:"allowlist_match"`
		Added     []map[string]string `json:"headers_added"`
		Reasons   []string            `json:"reasons"`
		Removed   []HeaderRef         `json:"headers_removed"`
	}{plain(d), vs, entry, d.Match, added, nonNil(d.Reasons), nonNilRefs(d.Remove)})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nonNilRefs(s []HeaderRef) []HeaderRef {
	if s == nil {
		return []HeaderRef{}
	}
	return s
}

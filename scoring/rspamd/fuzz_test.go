package rspamd

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/fpsafe/fpsafe/scoring"
)

// FuzzParseReply: parseReply never panics and never guesses. A verdict needs a known
// action and a finite score; its outcome is the one the action maps to, so Clean comes
// only from an action the table maps to Clean, never from a spam action (add header,
// rewrite subject, reject); an unknown action, an "error" member or is_skipped with
// "no action" is an error. errorField never panics either.
func FuzzParseReply(f *testing.F) {
	for _, s := range []string{
		gtubeReply, hamReply, noHdrReply,
		`{"is_skipped":false,"score":0,"required_score":15,"action":"no action"}`,
		`{"is_skipped":true,"score":0,"required_score":15,"action":"no action"}`,
		`{"score":3,"required_score":15,"action":"greylist"}`,
		`{"score":3,"required_score":15,"action":"soft reject"}`,
		`{"score":9,"required_score":15,"action":"rewrite subject"}`,
		`{"score":9,"action":"No Action"}`,
		`{"score":9,"action":"discard"}`,
		`{"action":"no action"}`,
		`{"score":1}`,
		`{"error":"bad request","action":"no action","score":0}`,
		`{"score":null,"action":"no action"}`,
		`{"score":1e400,"action":"no action"}`,
		`{"score":1,"action":"no action","symbols":{"A":{"score":1.5},"B":{"name":"X","score":-2,"options":["o"]}}}`,
		`{"score":1,"action":"no action","action":"reject"}`,
		`{"score":1,"action":"no action","symbols":[]}`,
		`[]`, `null`, ``, `{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		errorField(b)
		v, err := parseReply(b)

		// What the reply says, decoded independently (case-insensitive keys, last one wins,
		// as encoding/json does).
		var raw struct {
			Action  *string  `json:"action"`
			Score   *float64 `json:"score"`
			Error   string   `json:"error"`
			Skipped bool     `json:"is_skipped"`
		}
		jerr := json.Unmarshal(b, &raw)

		if err != nil {
			if v.Outcome != "" || v.Details != nil || v.Score != 0 {
				t.Fatalf("error %v with a verdict %+v", err, v)
			}
			if jerr == nil && raw.Action != nil && raw.Error == "" && !strings.HasPrefix(err.Error(), "bad reply") {
				if _, known := outcomes[*raw.Action]; !known && !strings.Contains(err.Error(), "unknown action") {
					t.Fatalf("unknown action %q: error %v", *raw.Action, err)
				}
			}
			return
		}
		if jerr != nil || raw.Action == nil || raw.Score == nil {
			t.Fatalf("a verdict %+v from %q (json: %v)", v, b, jerr)
		}
		if raw.Error != "" {
			t.Fatalf("a verdict %+v from an error reply %q", v, b)
		}
		want, known := outcomes[*raw.Action]
		if !known {
			t.Fatalf("a verdict %+v from unknown action %q", v, *raw.Action)
		}
		if v.Outcome != want {
			t.Fatalf("action %q gave %q, want %q", *raw.Action, v.Outcome, want)
		}
		// Clean only from the actions the table maps to Clean ("no action", and rspamd's
		// "try later" actions greylist and soft reject), never from a spam action, and
		// never when rspamd skipped the message with "no action".
		if v.Outcome == scoring.Clean {
			switch *raw.Action {
			case "add header", "rewrite subject", "reject":
				t.Fatalf("Clean from spam action %q", *raw.Action)
			}
			if *raw.Action == "no action" && raw.Skipped {
				t.Fatalf("Clean from a skipped message")
			}
		}
		if math.IsNaN(v.Score) || math.IsInf(v.Score, 0) || math.IsNaN(v.Threshold) || math.IsInf(v.Threshold, 0) {
			t.Fatalf("non-finite score in %+v", v)
		}
		if len(v.Details) == 0 || v.Details[0] != "action="+*raw.Action {
			t.Fatalf("details %q do not start with the action %q", v.Details, *raw.Action)
		}
		if !slices.IsSorted(v.Details[1:]) {
			t.Fatalf("symbols not sorted: %q", v.Details)
		}
	})
}

package telemetry

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Record is a decision record as written to a JSON decision log.
type Record struct {
	Time      string           `json:"time"`
	QueueID   string           `json:"queue_id"`
	MessageID string           `json:"message_id"`
	ClientIP  string           `json:"client_ip"`
	MailFrom  string           `json:"mail_from"`
	Rcpts     []string         `json:"rcpts"`
	Action    string           `json:"action"`
	Verdict   string           `json:"verdict"`
	Score     float64          `json:"score"`
	Observe   bool             `json:"observe"`
	Engines   []EngineRecord   `json:"engines"`
	Allowlist *AllowlistRecord `json:"allowlist"`
	Auth      AuthRecord       `json:"auth"`
	Reasons   []string         `json:"reasons"`
	TookMS    float64          `json:"took_ms"`
}

// Find reads a JSON-lines decision log and returns the records of queueID (a message can
// appear more than once, e.g. after a release and re-scan), oldest first. Lines that are
// not decision records are skipped.
func Find(r io.Reader, queueID string) ([]Record, error) {
	var out []Record
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	needle := fmt.Sprintf("%q", queueID)
	for sc.Scan() {
		line := sc.Bytes()
		if !strings.Contains(string(line), needle) {
			continue
		}
		var rec struct {
			Msg string `json:"msg"`
			Record
		}
		if json.Unmarshal(line, &rec) != nil || rec.Msg != "decision" || rec.QueueID != queueID {
			continue
		}
		out = append(out, rec.Record)
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("decision log: %w", err)
	}
	return out, nil
}

// Print writes a record for a person: what happened to the message, and why.
func (r Record) Print(w io.Writer) {
	mode := ""
	if r.Observe {
		mode = " (observe mode: not enforced)"
	}
	fmt.Fprintf(w, "queue id:   %s\ntime:       %s\nmessage-id: %s\nclient:     %s\nfrom:       %s\nto:         %s\n",
		r.QueueID, r.Time, r.MessageID, r.ClientIP, r.MailFrom, strings.Join(r.Rcpts, ", "))
	fmt.Fprintf(w, "decision:   %s, verdict %s, score %.1f%s, decided in %.0f ms\n", r.Action, r.Verdict, r.Score, mode, r.TookMS)
	if len(r.Engines) > 0 {
		fmt.Fprintln(w, "engines:")
		for _, e := range r.Engines {
			fmt.Fprintf(w, "  %-12s %-10s score %5.1f  %6.1f ms", e.Engine, e.Outcome, e.Score, e.MS)
			if e.Reason != "" {
				fmt.Fprintf(w, "  (%s)", e.Reason)
			}
			if len(e.Details) > 0 {
				fmt.Fprintf(w, "  %s", strings.Join(e.Details, ", "))
			}
			fmt.Fprintln(w)
		}
	}
	if r.Auth != (AuthRecord{}) {
		fmt.Fprintf(w, "sender:     from=%s spf=%s dkim=%s dmarc=%s\n", r.Auth.From, r.Auth.SPF, r.Auth.DKIM, r.Auth.DMARC)
	}
	if a := r.Allowlist; a != nil {
		state := "NOT authenticated: no bypass"
		if a.Authenticated {
			state = "authenticated: quarantine bypassed"
		}
		fmt.Fprintf(w, "allowlist:  entry %s (require %s) matched %s, %s (%s)\n", a.Entry, a.Require, a.Matched, state, a.Why)
	}
	if len(r.Reasons) > 0 {
		fmt.Fprintln(w, "why:")
		for _, reason := range r.Reasons {
			fmt.Fprintf(w, "  - %s\n", reason)
		}
	}
}

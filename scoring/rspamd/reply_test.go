package rspamd

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/fpsafe/fpsafe/scoring"
)

// Replies captured from rspamd 3.4 (Debian) on the lab machine, trimmed.
const (
	gtubeReply = `{"is_skipped":true,"score":15.0,"required_score":15.0,"action":"reject","symbols":{"GTUBE":{"name":"GTUBE","score":0.0,"metric_score":0.0}},"messages":{"smtp_message":"Gtube pattern"},"message-id":"GTUBE1.1010101@example.net","time_real":0.135339}`
	hamReply   = `{"is_skipped":false,"score":2.0,"required_score":15.0,"action":"no action","symbols":{"MV_CASE":{"name":"MV_CASE","score":0.500000,"metric_score":0.500000,"description":"Mime-Version .vs. MIME-Version"},"DATE_IN_PAST":{"name":"DATE_IN_PAST","score":1.0,"metric_score":1.0,"options":["224486"]},"MIME_GOOD":{"name":"MIME_GOOD","score":-0.100000,"metric_score":-0.100000,"options":["text/plain"]}},"messages":{},"urls":["tbtf.com"],"emails":["dawson@world.std.com"],"milter":{"remove_headers":{"X-Spam":0}}}`
	noHdrReply = `{"is_skipped":false,"score":7.900000,"required_score":15.0,"action":"add header","symbols":{"MISSING_FROM":{"name":"MISSING_FROM","score":2.0},"MISSING_MID":{"name":"MISSING_MID","score":2.500000}},"messages":{}}`
)

func TestParseReply(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    scoring.Outcome
		score   float64
		thresh  float64
		details []string
	}{
		{"gtube pre-result", gtubeReply, scoring.Spam, 15, 15, []string{"GTUBE(0.00)"}},
		{"ham", hamReply, scoring.Clean, 2, 15, []string{"DATE_IN_PAST(1.00)", "MIME_GOOD(-0.10)", "MV_CASE(0.50)"}},
		{"add header", noHdrReply, scoring.Spam, 7.9, 15, []string{"MISSING_FROM(2.00)", "MISSING_MID(2.50)"}},
		{"rewrite subject", `{"score":9,"required_score":15,"action":"rewrite subject"}`, scoring.Spam, 9, 15, nil},
		{"greylist", `{"score":4.5,"required_score":15,"action":"greylist","symbols":{}}`, scoring.Clean, 4.5, 15, nil},
		{"soft reject", `{"score":0,"required_score":15,"action":"soft reject"}`, scoring.Clean, 0, 15, nil},
		{"negative score", `{"score":-3.2,"required_score":15,"action":"no action"}`, scoring.Clean, -3.2, 15, nil},
		{"unknown keys", `{"score":1,"required_score":15,"action":"no action","future":{"x":[1,2]},"symbols":{"S":{"name":"S","score":1,"new_key":true}}}`, scoring.Clean, 1, 15, []string{"S(1.00)"}},
		{"symbol without name", `{"score":1,"required_score":15,"action":"no action","symbols":{"KEYED":{"score":1}}}`, scoring.Clean, 1, 15, []string{"KEYED(1.00)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := parseReply([]byte(tt.in))
			if err != nil {
				t.Fatalf("parseReply: %v", err)
			}
			if v.Outcome != tt.want || v.Score != tt.score || v.Threshold != tt.thresh {
				t.Errorf("got %s %g/%g, want %s %g/%g", v.Outcome, v.Score, v.Threshold, tt.want, tt.score, tt.thresh)
			}
			wantDetails := append([]string{"action=" + actionOf(tt.in)}, tt.details...)
			if !slices.Equal(v.Details, wantDetails) {
				t.Errorf("details %q, want %q", v.Details, wantDetails)
			}
		})
	}
}

func TestParseReplyMalformed(t *testing.T) {
	tests := []struct {
		name, in, want string // want: a substring of the error
	}{
		{"empty", ``, "bad reply"},
		{"garbage", "\x00\xffgarbage\r\n", "bad reply"},
		{"html", `<html><body>502 Bad Gateway</body></html>`, "bad reply"},
		{"truncated", gtubeReply[:60], "bad reply"},
		{"array", `[1,2,3]`, "bad reply"},
		{"null", `null`, "no action"},
		{"empty object", `{}`, "no action"},
		{"no action", `{"score":1,"required_score":15}`, "no action"},
		{"null action", `{"score":1,"required_score":15,"action":null}`, "no action"},
		{"unknown action", `{"score":1,"required_score":15,"action":"quarantine"}`, `unknown action "quarantine"`},
		{"action case", `{"score":1,"required_score":15,"action":"No Action"}`, "unknown action"},
		{"no score", `{"required_score":15,"action":"no action"}`, "no score"},
		{"score as string", `{"score":"1.0","required_score":15,"action":"no action"}`, "bad reply"},
		{"bad symbols", `{"score":1,"required_score":15,"action":"no action","symbols":[1]}`, "bad reply"},
		{"error field", `{"error":"invalid command","error_domain":"protocol-error"}`, "invalid command"},
		{"error with verdict", `{"error":"task timed out","score":0,"required_score":15,"action":"no action"}`, "task timed out"},
		{"skipped without verdict", `{"is_skipped":true,"score":0,"required_score":15,"action":"no action"}`, "skipped"},
		{"trailing garbage", `{"score":1,"required_score":15,"action":"no action"}xx`, "bad reply"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := parseReply([]byte(tt.in))
			if err == nil {
				t.Fatalf("parseReply(%q) = %+v, want an error", tt.in, v)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			if v.Outcome != "" {
				t.Errorf("verdict %q returned with an error", v.Outcome)
			}
		})
	}
	if _, err := parseReply([]byte(`{"is_skipped":true,"score":0,"required_score":15,"action":"no action"}`)); !errors.Is(err, errSkipped) {
		t.Errorf("skipped reply: %v, want errSkipped", err)
	}
}

func TestParseAddress(t *testing.T) {
	tests := []struct {
		in, base, sock string
	}{
		{"http://127.0.0.1:11333", "http://127.0.0.1:11333", ""},
		{"http://127.0.0.1:11333/", "http://127.0.0.1:11333", ""},
		{"http://scanner.example:11334/rspamd/", "http://scanner.example:11334/rspamd", ""},
		{"https://rspamd.example", "https://rspamd.example", ""},
		{"http://[::1]:11333", "http://[::1]:11333", ""},
		{"inet:127.0.0.1:11333", "http://127.0.0.1:11333", ""},
		{"127.0.0.1:11333", "http://127.0.0.1:11333", ""},
		{"unix:/run/rspamd/normal.sock", "http://rspamd", "/run/rspamd/normal.sock"},
	}
	for _, tt := range tests {
		base, sock, err := parseAddress(tt.in)
		if err != nil || base != tt.base || sock != tt.sock {
			t.Errorf("parseAddress(%q) = %q, %q, %v; want %q, %q", tt.in, base, sock, err, tt.base, tt.sock)
		}
	}
	for _, bad := range []string{"", "ftp://h:1", "http://", "http://h:1/?q=1", "http://u:p@h:1", "unix:", "inet:nohost", "localhost", "http://h:1/#x"} {
		if base, sock, err := parseAddress(bad); err == nil {
			t.Errorf("parseAddress(%q) = %q, %q; want an error", bad, base, sock)
		}
		if _, err := New(scoring.EngineConfig{Name: "r", Type: "rspamd", Address: bad}.WithDefaults()); err == nil {
			t.Errorf("New accepted address %q", bad)
		}
	}
}

func TestClean(t *testing.T) {
	for in, want := range map[string]string{
		"a@example.org":                    "a@example.org",
		" a@example.org\r\n":               "a@example.org",
		"a@example.org\r\nX-Injected: yes": "a@example.orgX-Injected: yes",
		"\x00\x7f":                         "",
		"jörg@example.de":                  "jörg@example.de",
		"mail.example.org\tother":          "mail.example.orgother",
		"":                                 "",
	} {
		if got := clean(in); got != want {
			t.Errorf("clean(%q) = %q, want %q", in, got, want)
		}
	}
}

// actionOf returns the action of a /checkv2 reply, which the client reports first in Details.
func actionOf(reply string) string {
	var r struct{ Action string }
	json.Unmarshal([]byte(reply), &r)
	return r.Action
}

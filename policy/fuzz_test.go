package policy

import (
	"math"
	"strings"
	"testing"

	"github.com/fpsafe/fpsafe/allowlist"
	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/scoring"
)

// fuzzStream hands out fuzzed bytes and strings; exhausted, it gives zeros and "".
type fuzzStream struct {
	b     []byte
	words []string
}

func (s *fuzzStream) byte() byte {
	if len(s.b) == 0 {
		return 0
	}
	c := s.b[0]
	s.b = s.b[1:]
	return c
}

func (s *fuzzStream) word() string {
	if len(s.words) == 0 {
		return ""
	}
	w := s.words[0]
	s.words = s.words[1:]
	return w
}

// float is a score: mostly small numbers with a fraction, sometimes extreme or not finite.
func (s *fuzzStream) float() float64 {
	switch c := s.byte(); c {
	case 0xff:
		return math.Inf(1)
	case 0xfe:
		return math.Inf(-1)
	case 0xfd:
		return math.NaN()
	case 0xfc:
		return 1000
	default:
		return float64(int8(c)) / 4
	}
}

var fuzzOutcomes = []scoring.Outcome{scoring.Clean, scoring.Spam, scoring.Suspicious, scoring.Virus,
	scoring.Error, scoring.Timeout, scoring.Skipped, ""}

// fuzzInput builds a Decide input and config from fuzzed data: verdicts (outcome, scored,
// score, threshold, weight, engine name, details, reason), an allowlist match or none,
// header fields ("Name:value" separated by NUL), a failure, the authserv-id and the
// Authentication-Results value, and the policy thresholds, mode and subject prefix.
func fuzzInput(vb []byte, text, hdr, failure, authserv, authResults string, cfgb []byte) (Input, Config) {
	s := &fuzzStream{b: vb, words: strings.Split(text, "\x00")}
	in := Input{Failure: failure, AuthservID: authserv, AuthResults: authResults}
	n := int(s.byte() % 6)
	for i := 0; i < n; i++ {
		v := scoring.Verdict{Outcome: fuzzOutcomes[int(s.byte())%len(fuzzOutcomes)]}
		flags := s.byte()
		v.Scored = flags&1 != 0 && v.Outcome.Answered()
		v.Score, v.Threshold = s.float(), s.float()
		if v.Scored {
			v.Normalized = scoring.Normalize(v.Score, v.Threshold)
		}
		v.Weight = float64(s.byte()%4) / 2
		v.Engine = s.word()
		for k := 0; k < int(flags>>1&7); k++ {
			v.Details = append(v.Details, s.word())
		}
		if flags&0x10 != 0 {
			v.Reason = s.word()
		}
		in.Verdicts = append(in.Verdicts, v)
	}
	switch m := s.byte(); m % 3 {
	case 1, 2:
		in.Match = &allowlist.Match{Entry: s.word(), Matched: s.word(), Require: s.word(), Why: s.word(), Authenticated: m%3 == 1}
	}
	if hdr != "" {
		for _, f := range strings.Split(hdr, "\x00") {
			name, value, _ := strings.Cut(f, ":")
			in.Header = append(in.Header, mail.Field{Name: name, Value: value})
		}
	}
	in.Identity = allowlist.Identity{From: s.word(), FromFields: int(s.byte() % 3)}

	cfg := DefaultConfig()
	c := &fuzzStream{b: cfgb}
	if len(cfgb) > 0 {
		cfg.TagScore = float64(int8(c.byte())) / 2
		cfg.QuarantineScore = cfg.TagScore + float64(c.byte())/2
		cfg.QuarantineMinEngines = int(c.byte() % 4)
		if c.byte()&1 != 0 {
			cfg.Mode = ModeObserve
		}
		cfg.SubjectPrefix = s.word()
		if p := s.word(); p != "" {
			cfg.StripHeaders = append(cfg.StripHeaders, p)
		}
		if cfg.Validate() != nil {
			cfg = DefaultConfig()
		}
	}
	return in, cfg
}

// FuzzDecide: Decide is total and keeps fpsafe's promises whatever the engines, the
// allowlist and the message say: the action is deliver, tag or quarantine; an
// authenticated allowlist match is never quarantined; quarantine needs a virus or
// quarantine_min_engines engines saying spam; an unscanned message is delivered without
// X-Spam-* fields or a new subject; observe mode changes nothing but fpsafe's own fields;
// every forged X-FPSafe-* (and stripped) field is removed, by an index that names it;
// Decide adds no line break of its own to any value, and none survives Fold, which
// the milter applies to every value it writes.
func FuzzDecide(f *testing.F) {
	f.Add([]byte{2, 3, 0, 0, 0, 2, 1, 0x7f, 20, 2}, "clamd\x00Win.Test.EICAR_HDB-1\x00spamd\x00GTUBE",
		"From: a@b\x00X-FPSafe-Verdict: clean\x00Subject: hi", "", "mx.example", "mx.example; dkim=none", []byte{})
	f.Add([]byte{2, 1, 1, 0xfc, 20, 2, 1, 1, 40, 20, 2, 1}, "spamd\x00rspamd\x00sec\x00domain sec.gov\x00dmarc\x00dmarc=pass",
		"X-Spam-Flag: YES\x00x-spam-status:No\x00Authentication-Results: mx.example; dkim=pass", "", "mx.example", "", []byte{10, 10, 1, 0})
	f.Add([]byte{1, 4, 0x10, 0, 0, 2, 2}, "clamd\x00connection refused", "Subject: hi", "", "", "", []byte{})
	f.Add([]byte{0}, "", "", "decision overran 8s", "", "", []byte{})
	f.Add([]byte{3, 3, 0x0e, 0, 0, 2, 1, 3, 0xfd, 0xff, 2, 2, 3, 0xfe, 0, 2}, "e1\x00a\r\nX-Injected: 1\x00b\x00c\x00e2\x00e3\x00\x00\x00\x00",
		"Subject: one\r\n two\x00X-FPSafe-Report:x\x00X-FPSAFE-REPORT:y", "", "", "", []byte{4, 2, 1, 1})
	f.Add([]byte{1, 1, 1, 40, 20, 2, 2}, "spamd\x00e\x00m\x00r\x00w\x00[SPAM]\x00X-Custom-*", "Subject: [SPAM] already\x00X-Custom-A: 1",
		"", "", "", []byte{8, 4, 1, 0})
	f.Fuzz(func(t *testing.T, vb []byte, text, hdr, failure, authserv, authResults string, cfgb []byte) {
		in, cfg := fuzzInput(vb, text, hdr, failure, authserv, authResults, cfgb)
		d := Decide(in, cfg)

		switch d.Action {
		case Deliver, Tag, Quarantine:
		default:
			t.Fatalf("action %v", d.Action)
		}
		if d.Observe != (cfg.Mode == ModeObserve) {
			t.Fatalf("observe %v in mode %q", d.Observe, cfg.Mode)
		}
		if in.Match != nil && in.Match.Authenticated && d.Action == Quarantine {
			t.Fatalf("authenticated allowlist match quarantined: %+v", d)
		}
		answered, viruses, spams := 0, 0, 0
		for _, v := range in.Verdicts {
			if v.Outcome.Answered() {
				answered++
			}
			switch v.Outcome {
			case scoring.Virus:
				viruses++
			case scoring.Spam:
				spams++
			}
		}
		if d.Action == Quarantine {
			if viruses == 0 && spams < cfg.QuarantineMinEngines {
				t.Fatalf("quarantined with %d virus and %d spam verdicts (min engines %d): %v", viruses, spams, cfg.QuarantineMinEngines, d.Reasons)
			}
			if !strings.HasPrefix(d.Quarantine, "fpsafe: ") {
				t.Fatalf("quarantine reason %q", d.Quarantine)
			}
		} else if d.Quarantine != "" {
			t.Fatalf("quarantine reason %q with action %v", d.Quarantine, d.Action)
		}
		unscanned := in.Failure != "" || answered == 0
		if unscanned != (d.Verdict == VerdictUnscanned) {
			t.Fatalf("verdict %q: failure %q, %d answers", d.Verdict, in.Failure, answered)
		}
		if unscanned && (d.Action != Deliver || d.Score != 0) {
			t.Fatalf("unscanned message: action %v score %v", d.Action, d.Score)
		}

		spamFields := 0
		for _, h := range d.Add {
			if strings.HasPrefix(strings.ToLower(h.Name), "x-spam-") {
				spamFields++
			}
		}
		if wantSpam := (d.Action == Tag || d.Action == Quarantine) && !d.Observe; wantSpam != (spamFields > 0) {
			t.Fatalf("X-Spam-* fields %d with action %v observe %v verdict %q", spamFields, d.Action, d.Observe, d.Verdict)
		}
		if d.Verdict == VerdictUnscanned && spamFields > 0 {
			t.Fatal("unscanned message flagged X-Spam-Flag")
		}
		if d.Subject != nil {
			if d.Action != Tag || d.Observe || cfg.SubjectPrefix == "" || strings.ContainsAny(*d.Subject, "\r\n") {
				t.Fatalf("subject %q with action %v observe %v", *d.Subject, d.Action, d.Observe)
			}
		}

		// The added fields: Authentication-Results first when there is one, then the verdict.
		add := d.Add
		if in.AuthResults != "" {
			if len(add) == 0 || add[0] != (mail.Field{Name: HeaderAuthResults, Value: in.AuthResults}) {
				t.Fatalf("first added field %v, want Authentication-Results %q", add, in.AuthResults)
			}
			add = add[1:]
		}
		if len(add) < 2 || add[0].Name != HeaderVerdict || !strings.HasPrefix(add[0].Value, string(d.Verdict)+"; score=") || add[1].Name != HeaderReport {
			t.Fatalf("added fields %v", d.Add)
		}
		inputBreaks := strings.ContainsAny(text+in.AuthResults+failure, "\r\n")
		for _, h := range d.Add {
			if !inputBreaks && strings.ContainsAny(h.Value, "\r\n") {
				t.Fatalf("Decide added a line break to %s: %q", h.Name, h.Value)
			}
			wire := mail.Fold(len(h.Name), h.Value)
			if strings.ContainsAny(strings.ReplaceAll(wire, "\r\n\t", ""), "\r\n") {
				t.Fatalf("line break survives Fold in %s: %q", h.Name, wire)
			}
		}

		// Removals: every stripped field, by a 1-based per-name index that names it, highest first.
		count := map[string]int{}
		want := 0
		for _, h := range in.Header {
			if cfg.stripped(h.Name) || forgedAuthResults(h, in.AuthservID) {
				want++
			}
			count[strings.ToLower(h.Name)]++
		}
		if len(d.Remove) != want {
			t.Fatalf("%d removals, want %d: %+v", len(d.Remove), want, d.Remove)
		}
		last := map[string]int{}
		for _, r := range d.Remove {
			k := strings.ToLower(r.Name)
			if r.Index < 1 || r.Index > count[k] {
				t.Fatalf("removal %+v: only %d fields named %q", r, count[k], r.Name)
			}
			if p, ok := last[k]; ok && r.Index >= p {
				t.Fatalf("removals of %q not highest index first: %+v", r.Name, d.Remove)
			}
			last[k] = r.Index
			seen := 0
			for _, h := range in.Header {
				if strings.EqualFold(h.Name, r.Name) {
					if seen++; seen == r.Index && !cfg.stripped(h.Name) && !forgedAuthResults(h, in.AuthservID) {
						t.Fatalf("removal %+v names a field fpsafe keeps", r)
					}
				}
			}
		}
		for _, h := range in.Header {
			if strings.HasPrefix(strings.ToLower(h.Name), "x-fpsafe-") && len(d.Remove) == 0 {
				t.Fatalf("forged %s kept", h.Name)
			}
		}
	})
}

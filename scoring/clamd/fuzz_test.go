package clamd

import (
	"bytes"
	"slices"
	"testing"

	"github.com/fpsafe/fpsafe/scoring"
)

// FuzzParseScan: parseScan never panics and never guesses. Its answer is an error, Clean
// (exactly one "stream: OK" reply and nothing else), or Virus with the sorted, distinct,
// printable signature names; never Clean when clamd said FOUND or ERROR. The PING and
// VERSION parsers and errorFrame read the same kind of bytes, so they get them too.
func FuzzParseScan(f *testing.F) {
	for _, s := range []string{
		"stream: OK\x00",
		"stream: Win.Test.EICAR_HDB-1 FOUND\x00",
		"stream: B FOUND\x00stream: A FOUND\x00stream: A FOUND\x00",
		"stream: A FOUND\x00Can't allocate memory ERROR\x00",
		"stream: OK\x00stream: OK\x00",
		"stream: OK\x00stream: A FOUND\x00",
		"INSTREAM size limit exceeded. ERROR\x00",
		"stream: Can't open file ERROR\x00",
		"stream: OK",
		"stream:  FOUND\x00",
		"stream: a b FOUND\x00",
		"stream: OK\x00\x00",
		"\x00",
		"",
		"PONG\x00",
		"ClamAV 1.0.7/27500/Mon Jan  1 00:00:00 2026\x00",
		"stream: \xff FOUND\x00",
		"stream: OK\n\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := parseScan(data)
		if err != nil {
			if v.Outcome != "" || v.Details != nil {
				t.Fatalf("error %v with a verdict %+v", err, v)
			}
		} else {
			switch v.Outcome {
			case scoring.Clean:
				if string(data) != "stream: OK\x00" {
					t.Fatalf("Clean from %q", data)
				}
				if len(v.Details) != 0 {
					t.Fatalf("Clean with details %q", v.Details)
				}
			case scoring.Virus:
				if len(v.Details) == 0 {
					t.Fatalf("Virus without a signature from %q", data)
				}
				if !slices.IsSorted(v.Details) || len(slices.Compact(slices.Clone(v.Details))) != len(v.Details) {
					t.Fatalf("signatures not sorted and distinct: %q", v.Details)
				}
				for _, s := range v.Details {
					if !validSignature(s) || !bytes.Contains(data, []byte("stream: "+s+" FOUND\x00")) {
						t.Fatalf("signature %q is not one clamd reported in %q", s, data)
					}
				}
				if !bytes.HasPrefix(data, []byte("stream: ")) {
					t.Fatalf("Virus from %q", data)
				}
			default:
				t.Fatalf("outcome %q from %q: want clean or virus", v.Outcome, data)
			}
			if v.Score != 0 || v.Scored || v.Reason != "" {
				t.Fatalf("unexpected fields in %+v", v)
			}
		}
		if v.Outcome == scoring.Clean && (bytes.Contains(data, []byte("FOUND")) || bytes.Contains(data, []byte("ERROR"))) {
			t.Fatalf("Clean from %q, which says FOUND or ERROR", data)
		}

		if err := parsePing(data); err == nil && string(data) != "PONG\x00" {
			t.Fatalf("PING accepted %q", data)
		}
		if ver, err := parseVersion(data); err == nil {
			if string(data) != ver+"\x00" || !printable(ver) {
				t.Fatalf("VERSION %q accepted from %q", ver, data)
			}
		}
		if e := errorFrame(data); e != nil && !bytes.Contains(data, []byte(" ERROR\x00")) {
			t.Fatalf("errorFrame %v from %q", e, data)
		}
	})
}

package clamd

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/fpsafe/fpsafe/scoring"
)

func TestParseScan(t *testing.T) {
	for _, tc := range []struct {
		name    string
		reply   string
		outcome scoring.Outcome // "" = must be an error
		details []string
		tooBig  bool
	}{
		{"ok", "stream: OK\x00", scoring.Clean, nil, false},
		{"found", "stream: Win.Test.EICAR_HDB-1 FOUND\x00", scoring.Virus, []string{"Win.Test.EICAR_HDB-1"}, false},
		{"found unofficial", "stream: Lab.EICAR.NDB.UNOFFICIAL FOUND\x00", scoring.Virus, []string{"Lab.EICAR.NDB.UNOFFICIAL"}, false},
		{"heuristic stays virus", "stream: Heuristics.Limits.Exceeded FOUND\x00", scoring.Virus, []string{"Heuristics.Limits.Exceeded"}, false},
		{"allmatch sorted and deduplicated", "stream: Z.Sig FOUND\x00stream: A.Sig FOUND\x00stream: Z.Sig FOUND\x00",
			scoring.Virus, []string{"A.Sig", "Z.Sig"}, false},
		{"size limit", "INSTREAM size limit exceeded. ERROR\x00", "", nil, true},
		{"other error", "lstat() failed: No such file or directory. ERROR\x00", "", nil, false},
		{"stream error", "stream: Can't allocate memory ERROR\x00", "", nil, false},
		{"found then error keeps the detection", "stream: A.Sig FOUND\x00stream: Timeout ERROR\x00", scoring.Virus, []string{"A.Sig"}, false},
		{"error then found", "stream: Timeout ERROR\x00stream: A.Sig FOUND\x00", "", nil, false},
		{"empty", "", "", nil, false},
		{"only NUL", "\x00", "", nil, false},
		{"no terminator", "stream: OK", "", nil, false},
		{"newline framing", "stream: OK\n", "", nil, false},
		{"cut in name", "stream: Lab.EIC", "", nil, false},
		{"ok twice", "stream: OK\x00stream: OK\x00", "", nil, false},
		{"ok and found", "stream: OK\x00stream: A.Sig FOUND\x00", "", nil, false},
		{"empty signature", "stream: FOUND\x00", "", nil, false},
		{"blank signature", "stream:  FOUND\x00", "", nil, false},
		{"space in signature", "stream: A Sig FOUND\x00", "", nil, false},
		{"control in signature", "stream: A\x01Sig FOUND\x00", "", nil, false},
		{"lower case ok", "stream: ok\x00", "", nil, false},
		{"no stream prefix", "OK\x00", "", nil, false},
		{"old STREAM prefix", "stream(127.0.0.1@3310): OK\x00", "", nil, false},
		{"session id prefix", "1: stream: OK\x00", "", nil, false},
		{"unknown command", "UNKNOWN COMMAND\x00", "", nil, false},
		{"pong", "PONG\x00", "", nil, false},
		{"empty line between", "stream: A.Sig FOUND\x00\x00", "", nil, false},
		{"garbage", "\x00\xffgarbage\r\nnot a reply\r\n\x00", "", nil, false},
		{"http", "HTTP/1.1 400 Bad Request\r\n\r\n", "", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := parseScan([]byte(tc.reply))
			if tc.outcome == "" {
				if err == nil {
					t.Fatalf("parseScan(%q) = %+v, want an error", tc.reply, v)
				}
				if got := errors.Is(err, ErrTooLarge); got != tc.tooBig {
					t.Fatalf("parseScan(%q): errors.Is(ErrTooLarge) = %v, want %v (%v)", tc.reply, got, tc.tooBig, err)
				}
				return
			}
			if err != nil || v.Outcome != tc.outcome || !slices.Equal(v.Details, tc.details) {
				t.Fatalf("parseScan(%q) = %+v, %v; want %s %v", tc.reply, v, err, tc.outcome, tc.details)
			}
		})
	}
}

func TestErrorFrame(t *testing.T) {
	for reply, want := range map[string]string{
		"INSTREAM size limit exceeded. ERROR\x00": "size limit exceeded",
		"stream: A.Sig FOUND\x00Oops ERROR\x00":   "Oops ERROR",
		"INSTREAM size limit exceeded. ERROR":     "", // not terminated: not a complete reply
		"stream: OK\x00":                          "",
		"":                                        "",
	} {
		err := errorFrame([]byte(reply))
		if (err == nil) != (want == "") || err != nil && !strings.Contains(err.Error(), want) {
			t.Errorf("errorFrame(%q) = %v, want %q", reply, err, want)
		}
	}
}

func TestParsePingVersion(t *testing.T) {
	for reply, ok := range map[string]bool{
		"PONG\x00":         true,
		"PONG":             false,
		"PONG\n":           false,
		"PONG\x00PONG\x00": false,
		"pong\x00":         false,
		"":                 false,
		"Oops ERROR\x00":   false,
	} {
		if err := parsePing([]byte(reply)); (err == nil) != ok {
			t.Errorf("parsePing(%q) = %v, want ok=%v", reply, err, ok)
		}
	}
	for reply, want := range map[string]string{
		"ClamAV 1.4.6\x00": "ClamAV 1.4.6",
		"ClamAV 1.4.6/27512/Sun Nov 29 09:30:00 2026\x00": "ClamAV 1.4.6/27512/Sun Nov 29 09:30:00 2026",
		"ClamAV 1.4.6":                     "",
		"ClamAV 1.4.6\x00ClamAV 1.4.6\x00": "",
		"ClamAV \x01\x00":                  "",
		"PONG\x00":                         "",
		"":                                 "",
	} {
		got, err := parseVersion([]byte(reply))
		if got != want || (err == nil) != (want != "") {
			t.Errorf("parseVersion(%q) = %q, %v; want %q", reply, got, err, want)
		}
	}
}

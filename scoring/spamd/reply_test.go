package spamd

import (
	"bufio"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseReply(t *testing.T) {
	ok := func(spam bool, score, threshold float64, body string) *reply {
		return &reply{Spam: spam, Score: score, Threshold: threshold, Body: body}
	}
	cases := []struct {
		name, in string
		want     *reply // nil: an error is expected
		code     int    // for errors: the expected spamd status code, 0 for parse errors
	}{
		{"symbols spam", "SPAMD/1.1 0 EX_OK\r\nContent-length: 18\r\nSpam: True ; 1003.3 / 5.0\r\n\r\nGTUBE,MISSING_DATE",
			ok(true, 1003.3, 5, "GTUBE,MISSING_DATE"), 0},
		{"trailing CRLFs", "SPAMD/1.1 0 EX_OK\r\nContent-length: 7\r\nSpam: True ; 15.0 / 5.0\r\n\r\nA,B,C\r\n\r\n\r\n",
			ok(true, 15, 5, "A,B,C\r\n"), 0},
		{"ham empty body", "SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: False ; 0.3 / 5.0\r\n\r\n",
			ok(false, 0.3, 5, ""), 0},
		{"negative score", "SPAMD/1.1 0 EX_OK\r\nContent-length: 9\r\nSpam: False ; -1.9 / 5.0\r\n\r\nALL_TRUST",
			ok(false, -1.9, 5, "ALL_TRUST"), 0},
		{"check no length", "SPAMD/1.1 0 EX_OK\r\nSpam: False ; 4.9 / 5.0\r\n\r\n", ok(false, 4.9, 5, ""), 0},
		{"report_ifspam yes", "SPAMD/1.1 0 EX_OK\r\nContent-length: 4\r\nSpam: Yes ; 7.1 / 6.0\r\n\r\ntext", ok(true, 7.1, 6, "text"), 0},
		{"report_ifspam no", "SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: No ; 1.0 / 6.0\r\n\r\n", ok(false, 1, 6, ""), 0},
		{"case and spacing", "SPAMD/1.5 0 EX_OK\r\nspam:true;2/1.5\r\nCONTENT-LENGTH:  1 \r\nX-Other: x\r\n\r\nA", ok(true, 2, 1.5, "A"), 0},
		{"bare LF", "SPAMD/1.1 0 EX_OK\nSpam: True ; 5.0 / 5.0\n\n", ok(true, 5, 5, ""), 0},

		{"status 76", "SPAMD/1.0 76 Bad header line: (Content-Length mismatch: Expected 10 bytes, got 5 bytes)\r\n", nil, 76},
		{"status 69", "SPAMD/1.0 69 Service Unavailable: Compress requires Content-length header\r\n", nil, 69},
		{"status 79 timeout", "SPAMD/1.0 79 Timeout: (300 second timeout while trying to CHECK)\r\n", nil, 79},
		{"empty", "", nil, 0},
		{"garbage", "\x00\xffgarbage\r\nnot a reply\r\n", nil, 0},
		{"http", "HTTP/1.1 200 OK\r\n\r\n", nil, 0},
		{"version 2", "SPAMD/2.0 0 EX_OK\r\nSpam: True ; 1.0 / 5.0\r\n\r\n", nil, 0},
		{"no code", "SPAMD/1.1\r\n", nil, 0},
		{"bad code", "SPAMD/1.1 x EX_OK\r\n", nil, 0},
		{"negative code", "SPAMD/1.1 -1 EX_OK\r\n", nil, 0},
		{"no Spam header", "SPAMD/1.1 0 EX_OK\r\nContent-length: 5\r\n\r\nGTUBE", nil, 0},
		{"status then EOF", "SPAMD/1.1 0 EX_OK\r\n", nil, 0},
		{"no blank line", "SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1.0 / 5.0\r\n", nil, 0},
		{"header cut", "SPAMD/1.1 0 EX_OK\r\nSpam: Tr", nil, 0},
		{"body short", "SPAMD/1.1 0 EX_OK\r\nContent-length: 68\r\nSpam: True ; 1.0 / 5.0\r\n\r\nGTUBE,MIS", nil, 0},
		{"header no colon", "SPAMD/1.1 0 EX_OK\r\nSpam True\r\n\r\n", nil, 0},
		{"bad flag", "SPAMD/1.1 0 EX_OK\r\nSpam: Maybe ; 1.0 / 5.0\r\n\r\n", nil, 0},
		{"no semicolon", "SPAMD/1.1 0 EX_OK\r\nSpam: True 1.0 / 5.0\r\n\r\n", nil, 0},
		{"no slash", "SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1.0 5.0\r\n\r\n", nil, 0},
		{"bad score", "SPAMD/1.1 0 EX_OK\r\nSpam: True ; x / 5.0\r\n\r\n", nil, 0},
		{"NaN score", "SPAMD/1.1 0 EX_OK\r\nSpam: True ; NaN / 5.0\r\n\r\n", nil, 0},
		{"Inf threshold", "SPAMD/1.1 0 EX_OK\r\nSpam: False ; 1.0 / Inf\r\n\r\n", nil, 0},
		{"bad length", "SPAMD/1.1 0 EX_OK\r\nContent-length: -3\r\nSpam: True ; 1.0 / 5.0\r\n\r\n", nil, 0},
		{"huge length", "SPAMD/1.1 0 EX_OK\r\nContent-length: 99999999999\r\nSpam: True ; 1.0 / 5.0\r\n\r\n", nil, 0},
		{"endless body", "SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1.0 / 5.0\r\n\r\n" + strings.Repeat("A,", maxReply), nil, 0},
		{"endless line", "SPAMD/1.1 0 EX_OK\r\nX: " + strings.Repeat("x", 2*maxReply), nil, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseReply(strings.NewReader(tc.in))
			if tc.want != nil {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				got.Version = ""
				if got != *tc.want {
					t.Errorf("got %+v, want %+v", got, *tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("got %+v, want an error", got)
			}
			var se *statusError
			if isStatus := errors.As(err, &se); isStatus != (tc.code != 0) || (isStatus && se.Code != tc.code) {
				t.Errorf("error %v: want status code %d", err, tc.code)
			}
		})
	}
}

func TestReadStatusPong(t *testing.T) {
	v, msg, err := readStatus(bufio.NewReader(strings.NewReader("SPAMD/1.5 0 PONG\r\n")))
	if err != nil || v != "1.5" || msg != "PONG" {
		t.Errorf("got %q %q %v", v, msg, err)
	}
}

func TestParseSymbols(t *testing.T) {
	cases := map[string][]string{
		"":                                    nil,
		"\r\n\r\n":                            nil,
		"GTUBE":                               {"GTUBE"},
		"NO_RELAYS,GTUBE,MISSING_MID\r\n\r\n": {"GTUBE", "MISSING_MID", "NO_RELAYS"},
		"B,,A, C ,A\r\n":                      {"A", "B", "C"},
	}
	for in, want := range cases {
		if got := parseSymbols(in); !slices.Equal(got, want) {
			t.Errorf("parseSymbols(%q) = %q, want %q", in, got, want)
		}
	}
}

// report is a REPORT body as spamd 4.0.1 sends it for GTUBE, with a wrapped description.
const report = `Spam detection software, running on the system "vm",
has identified this incoming email as possible spam.

Content preview:  XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X
   1.0 points are not rules

Content analysis details:   (1003.3 points, 5.0 required)

 pts rule name              description
---- ---------------------- --------------------------------------------------
 2.7 MISSING_DATE           Missing Date: header
-0.0 NO_RECEIVED            Informational: message has no Received headers
 0.6 MISSING_MID            Missing Message-Id: header
1000 GTUBE                  BODY: Generic Test for Unsolicited Bulk Email
 0.1 URIBL_BLOCKED          ADMINISTRATOR NOTICE: The query to URIBL was
                            blocked.  See
                            http://wiki.apache.org/spamassassin/DnsBlocklists#dnsbl-block
                             for more information.
                            [URIs: example.org]
 0.0 TVD_SPACE_RATIO        No description available.

`

func TestParseReport(t *testing.T) {
	want := []string{"GTUBE", "MISSING_DATE", "MISSING_MID", "NO_RECEIVED", "TVD_SPACE_RATIO", "URIBL_BLOCKED"}
	if got := parseReport(strings.ReplaceAll(report, "\n", "\r\n")); !slices.Equal(got, want) {
		t.Errorf("parseReport = %q, want %q", got, want)
	}
	if got := parseReport("no table here\n 1.0 FOO bar\n"); got != nil {
		t.Errorf("parseReport without table = %q, want nil", got)
	}
}

package mail_test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fpsafe/fpsafe/internal/mail"
	"github.com/fpsafe/fpsafe/internal/testmsg"
)

// fuzzMessages are the seed messages: the repository's sample messages and the ones the
// engine tests send.
func fuzzMessages(f *testing.F) [][]byte {
	f.Helper()
	seeds := [][]byte{
		testmsg.Ham(), testmsg.Spam(), testmsg.Virus(), testmsg.Big(300),
		testmsg.From("ir@agency.gov", "Filing", false),
		[]byte("From: a@b\r\nSubject: hi\r\n\r\nbody\r\n"),
		[]byte("From: a@b\nSubject: one\n two\n\nbody\n"),
		[]byte("Subject: one\r\n\ttwo\r\n  three\r\n\r\nx"),
		[]byte("X-A:b\r\n\r\n"),
		[]byte("From : a@b\r\nFrom: c@d\r\n\r\n"),
		[]byte("From: a@b\nnot a header\nSubject: x\n\nrest\n"),
		[]byte(""),
		[]byte("\r\nhello\r\n"),
		[]byte(" leading space\r\n"),
		[]byte("Subject: caf\xc3\xa9\x00\r\n\r\n\xff\x00"),
		[]byte("Subject: a\rb\r\r\n \r\n\r\n"),
	}
	paths, _ := filepath.Glob("../../testdata/messages/*.eml")
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	return seeds
}

// readAll reads a whole Body or message stream.
func readAll(t *testing.T, open func() (io.ReadCloser, error)) []byte {
	t.Helper()
	r, err := open()
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return b
}

// FuzzReadMessage: ReadMessage accepts any bytes without panicking or failing; the field
// names it keeps are RFC 5322 ftext; Size is exactly what Open yields (spamd and rspamd
// send it as Content-Length); and a message re-read from its own rendering (HeaderBytes,
// Open) has the same fields and body, so nothing fpsafe rebuilds drifts from what it read.
// The threshold makes some bodies go to a spool file, which Remove must delete.
func FuzzReadMessage(f *testing.F) {
	for _, b := range fuzzMessages(f) {
		f.Add(b, uint16(1<<15))
		f.Add(b, uint16(0))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, raw []byte, threshold uint16) {
		m, err := mail.ReadMessage(bytes.NewReader(raw), mail.NewSpool(dir, int64(threshold)))
		if err != nil {
			t.Fatalf("ReadMessage: %v", err)
		}
		if m.Body == nil {
			t.Fatal("nil Body")
		}
		defer func() {
			if err := m.Body.Remove(); err != nil {
				t.Errorf("Remove: %v", err)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("spool files left after Remove: %v", ents)
			}
		}()

		for i, fl := range m.Header {
			if fl.Name == "" {
				t.Fatalf("field %d has an empty name", i)
			}
			for j := 0; j < len(fl.Name); j++ {
				if c := fl.Name[j]; c <= ' ' || c >= 0x7f || c == ':' {
					t.Fatalf("field %d name %q has byte %#x", i, fl.Name, c)
				}
			}
		}

		body := readAll(t, m.Body.Open)
		if int64(len(body)) != m.Body.Size() {
			t.Fatalf("Body.Size %d, Open gave %d bytes", m.Body.Size(), len(body))
		}
		whole := readAll(t, m.Open)
		if int64(len(whole)) != m.Size() {
			t.Fatalf("Size %d, Open gave %d bytes", m.Size(), len(whole))
		}
		hb := m.HeaderBytes()
		if !bytes.HasPrefix(whole, hb) || !bytes.Equal(whole[len(hb):], body) {
			t.Fatalf("Open is not HeaderBytes then the body")
		}
		if len(m.Header) == 0 {
			// No fields: the body is the input, or what follows an empty first line.
			end := bytes.IndexByte(raw, '\n') + 1
			if end == 0 {
				end = len(raw)
			}
			emptyFirst := len(bytes.TrimRight(raw[:end], "\r\n")) == 0
			if !bytes.Equal(body, raw) && !(emptyFirst && bytes.Equal(body, raw[end:])) {
				t.Fatalf("no fields, but the body %s is not the input %s", clip(body), clip(raw))
			}
		}

		// The header section re-read alone: the same fields.
		h2, err := mail.ReadMessage(bytes.NewReader(hb), mail.NewSpool("", 1<<20))
		if err != nil {
			t.Fatalf("re-read HeaderBytes: %v", err)
		}
		sameFields(t, "HeaderBytes", m.Header, h2.Header)
		if h2.Body.Size() != 0 {
			t.Fatalf("re-read HeaderBytes left a body of %d bytes", h2.Body.Size())
		}

		// The whole rendering re-read: the same fields and body.
		m2, err := mail.ReadMessage(bytes.NewReader(whole), mail.NewSpool("", 1<<20))
		if err != nil {
			t.Fatalf("re-read Open: %v", err)
		}
		sameFields(t, "Open", m.Header, m2.Header)
		if b2 := readAll(t, m2.Body.Open); !bytes.Equal(b2, body) {
			t.Fatalf("re-read body %s, want %s", clip(b2), clip(body))
		}

		// Accessors never panic.
		m.Get("From")
		m.Values("Subject")
		addrs, n, _ := mail.FromAddresses(m)
		if n != len(m.Values("From")) {
			t.Fatalf("FromAddresses counted %d fields, Values %d", n, len(m.Values("From")))
		}
		for _, a := range addrs {
			mail.AddressDomain(a)
		}
		for _, fl := range m.Header {
			if strings.ContainsAny(fl.Text(), "\r\n") {
				t.Fatalf("Text() of %q kept a line break: %q", fl.Name, fl.Text())
			}
		}
	})
}

// clip quotes b for a failure message, shortened: crashers can be 64 KiB long.
func clip(b []byte) string {
	if len(b) > 160 {
		return fmt.Sprintf("%q...(%d bytes)", b[:160], len(b))
	}
	return fmt.Sprintf("%q", b)
}

func sameFields(t *testing.T, what string, want, got []mail.Field) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s re-read: %d fields, want %d", what, len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%s re-read: field %d = %s, want %s", what, i, clip([]byte(got[i].Name+":"+got[i].Value)), clip([]byte(want[i].Name+":"+want[i].Value)))
		}
	}
}

// FuzzFold: what Fold returns is safe to write as a header value: the only line breaks
// are the CRLF+TAB it inserts itself, no other control character survives, the words
// are unchanged, and a line is longer than 78 only when it holds a single word.
func FuzzFold(f *testing.F) {
	f.Add(len("X-FPSafe-Report"), strings.Repeat("word ", 40)+"\r\nX-Injected: yes\x00")
	f.Add(len("Subject"), "[SPAM] Quarterly figures meeting")
	f.Add(0, "")
	f.Add(10, "a\tb\nc\rd\x7fe\x00f   g")
	f.Add(76, strings.Repeat("x", 100)+" y "+strings.Repeat("z", 90))
	f.Add(-5, "caf\xc3\xa9 \xff\xfe \u0085 \u00a0 \u2028")
	f.Add(len("X-FPSafe-Verdict"), "clean; score=0.0")
	f.Fuzz(func(t *testing.T, nameLen int, value string) {
		out := mail.Fold(nameLen, value)
		for i := 0; i < len(out); i++ {
			c := out[i]
			switch {
			case c == '\r':
				if !strings.HasPrefix(out[i:], "\r\n\t") {
					t.Fatalf("CR not starting CRLF TAB at %d in %q", i, out)
				}
			case c == '\n':
				if i == 0 || out[i-1] != '\r' || i+1 >= len(out) || out[i+1] != '\t' {
					t.Fatalf("LF outside CRLF TAB at %d in %q", i, out)
				}
			case c == '\t':
				if i < 2 || out[i-2:i] != "\r\n" {
					t.Fatalf("TAB outside a fold at %d in %q", i, out)
				}
			case c < ' ' || c == 0x7f:
				t.Fatalf("control byte %#x at %d in %q", c, i, out)
			}
		}
		// The same words, in the same order: folding only replaces spaces.
		clean := strings.Map(func(r rune) rune {
			if r < ' ' || r == 0x7f {
				return ' '
			}
			return r
		}, value)
		if got, want := strings.Split(strings.ReplaceAll(out, "\r\n\t", " "), " "), strings.Split(clean, " "); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("words changed: %q from %q", out, value)
		}
		if nameLen < 0 || nameLen > 1000 {
			return
		}
		for i, line := range strings.Split(out, "\r\n") {
			n := len(line)
			if i == 0 {
				n += nameLen + 2 // "Name: " shares the first line
			} else {
				line = line[1:] // the TAB
			}
			// (an empty word, from a run of spaces, may follow the fold's TAB: Fold never
			// leaves a line holding only white space)
			words := 0 // Fold splits at ASCII spaces only
			for _, w := range strings.Split(line, " ") {
				if w != "" {
					words++
				}
			}
			if n > 78 && words > 1 {
				t.Fatalf("line %d is %d long with several words: %q", i, n, out)
			}
		}
	})
}

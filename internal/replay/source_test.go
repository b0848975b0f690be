package replay

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/fpsafe/fpsafe/internal/mail"
)

func mboxMessages(t *testing.T, raw string) []string {
	t.Helper()
	mr := newMboxReader(iotest.OneByteReader(strings.NewReader(raw)))
	var out []string
	for mr.Next() {
		b, err := io.ReadAll(mr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	if err := mr.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMboxReader(t *testing.T) {
	for _, c := range []struct {
		name string
		raw  string
		want []string
	}{
		{"two", "From a@b Mon Nov  2 10:00:00 2026\nSubject: one\n\nbody 1\n\nFrom c@d Mon Nov  2 10:00:01 2026\nSubject: two\n\nbody 2\n\n",
			[]string{"Subject: one\n\nbody 1\n", "Subject: two\n\nbody 2\n"}},
		{"crlf", "From a@b x\r\nSubject: one\r\n\r\nbody\r\n\r\nFrom c@d y\r\nSubject: two\r\n\r\nb2\r\n",
			[]string{"Subject: one\r\n\r\nbody\r\n", "Subject: two\r\n\r\nb2\r\n"}},
		{"mboxrd unescape", "From a@b x\nSubject: s\n\n>From here on\n>>From quoted\n>Fromage\nFrom inside a paragraph\n\nFrom c@d y\nSubject: t\n\n",
			[]string{"Subject: s\n\nFrom here on\n>From quoted\n>Fromage\nFrom inside a paragraph\n", "Subject: t\n"}},
		{"blank lines kept except the separator's", "From a@b x\nS: 1\n\nx\n\n\n\nFrom c@d y\nS: 2\n\ny",
			[]string{"S: 1\n\nx\n\n\n", "S: 2\n\ny"}},
		{"no trailing newline", "From a@b x\nSubject: s\n\nlast", []string{"Subject: s\n\nlast"}},
		{"empty message", "From a@b x\nFrom c@d y\nS: 2\n", []string{"From c@d y\nS: 2\n"}},
		{"preamble skipped", "garbage\n\nFrom a@b x\nS: 1\n", []string{"S: 1\n"}},
		{"empty file", "", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := mboxMessages(t, c.raw); !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %q\nwant %q", got, c.want)
			}
		})
	}
}

// A line far longer than the reader's buffer is streamed, and a "From " inside it is not a
// separator.
func TestMboxLongLine(t *testing.T) {
	long := strings.Repeat("x", 100<<10) + "From inside" + strings.Repeat("x", 100<<10) + "\nFrom not a separator: the line before is not blank"
	raw := "From a@b x\nSubject: s\n\n" + long + "\n\nFrom c@d y\nS: 2\n"
	got := mboxMessages(t, raw)
	if len(got) != 2 || got[0] != "Subject: s\n\n"+long+"\n" || got[1] != "S: 2\n" {
		t.Fatalf("%d messages; first %d bytes", len(got), len(got[0]))
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestOpenKinds(t *testing.T) {
	dir := t.TempDir()
	md := filepath.Join(dir, "Maildir")
	write(t, filepath.Join(md, "new", "1.host"), "Subject: a\n\n")
	write(t, filepath.Join(md, "cur", "2.host:2,S"), "Subject: b\n\n")
	write(t, filepath.Join(md, "tmp", "3.host"), "Subject: in delivery\n\n")
	write(t, filepath.Join(md, ".Sent", "cur", "4.host:2,S"), "Subject: c\n\n")
	write(t, filepath.Join(dir, "eml", "a.eml"), "Subject: a\n\n")
	write(t, filepath.Join(dir, "eml", "sub", "b.EML"), "Subject: b\n\n")
	write(t, filepath.Join(dir, "eml", "notes.txt"), "not a message")
	write(t, filepath.Join(dir, "box.mbox"), "From a@b x\nSubject: a\n\nFrom c@d y\nSubject: b\n")
	write(t, filepath.Join(dir, "one.eml"), "Subject: a\n\n")

	for _, c := range []struct {
		path, kind string
		files      []string
		count      int
	}{
		{md, KindMaildir, []string{"new/1.host", "cur/2.host:2,S", ".Sent/cur/4.host:2,S"}, 3},
		{filepath.Join(dir, "eml"), KindEML, []string{"a.eml", "sub/b.EML"}, 2},
		{filepath.Join(dir, "box.mbox"), KindMbox, nil, 2},
		{filepath.Join(dir, "one.eml"), KindFile, []string{filepath.Join(dir, "one.eml")}, 1},
	} {
		s, err := Open(c.path)
		if err != nil {
			t.Fatal(err)
		}
		n, err := s.Count()
		if s.Kind != c.kind || err != nil || n != c.count {
			t.Errorf("%s: kind %s count %d %v; want %s %d", c.path, s.Kind, n, err, c.kind, c.count)
		}
		if c.files != nil && !reflect.DeepEqual(s.files, c.files) {
			t.Errorf("%s: files %q, want %q", c.path, s.files, c.files)
		}
	}
	if _, err := Open(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing path opened")
	}
}

func testSpool(t *testing.T) *mail.Spool { return mail.NewSpool(t.TempDir(), 1<<20) }

func TestHeaderCheck(t *testing.T) {
	for _, c := range []struct{ raw, problem string }{
		{"From: a@b\nSubject: x\n\nbody\n", ""},
		{"From: a@b\r\nSubject: x\r\n\tfolded\r\n\r\nbody\r\n", ""},
		{"From: a@b\nSubject: x", ""},
		{"From: broken\nThis line is not a header\nSubject: lost\n\nbody\n", "header line 2 is neither a field nor a continuation"},
		{" leading: space\n\n", "header line 1 is neither"},
		{"\nbody only\n", "no header fields"},
		{"", "empty message"},
	} {
		m, problem, err := readMessage(strings.NewReader(c.raw), testSpool(t))
		if err != nil || m == nil {
			t.Fatalf("%q: %v", c.raw, err)
		}
		if (c.problem == "") != (problem == "") || !strings.Contains(problem, c.problem) {
			t.Errorf("%q: problem %q, want %q", c.raw, problem, c.problem)
		}
	}
}

func TestEnvelope(t *testing.T) {
	for _, c := range []struct {
		raw, from string
		rcpts     []string
	}{
		{"Return-Path: <bounce@list.example>\nFrom: A <a@example.org>\nTo: B <b@example.net>, c@example.net\nCc: d@example.com\n\n", "bounce@list.example", []string{"b@example.net", "c@example.net", "d@example.com"}},
		{"Return-Path: <>\nFrom: a@example.org\nTo: b@example.net\n\n", "", []string{"b@example.net"}},
		{"From: \"A\" <a@example.org>\nTo: undisclosed-recipients:;\n\n", "a@example.org", nil},
		{"From: broken\n\n", "", nil},
	} {
		m, _, _ := readMessage(strings.NewReader(c.raw), testSpool(t))
		env := Envelope(m)
		if env.MailFrom != c.from || !reflect.DeepEqual(env.Rcpts, c.rcpts) {
			t.Errorf("%q: %q %q; want %q %q", c.raw, env.MailFrom, env.Rcpts, c.from, c.rcpts)
		}
	}
}

func TestDisplay(t *testing.T) {
	if got := display("=?utf-8?q?Gr=C3=BC=C3=9Fe?= aus\tBerlin"); got != "Grüße aus Berlin" {
		t.Errorf("got %q", got)
	}
	if got := display("=?x-unknown?q?abc?="); got != "=?x-unknown?q?abc?=" {
		t.Errorf("got %q", got)
	}
}

// An I/O error is not a malformed message: readMessage reports it as an error.
func TestReadMessageError(t *testing.T) {
	r := io.MultiReader(strings.NewReader("Subject: x\n\nbody"), iotest.ErrReader(errors.New("disk on fire")))
	m, problem, err := readMessage(r, testSpool(t))
	if err == nil || !strings.Contains(err.Error(), "disk on fire") || problem != "" || m == nil || m.Body == nil {
		t.Fatalf("%v %q %v", m, problem, err)
	}
}

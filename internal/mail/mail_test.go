package mail

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"
)

func read(t *testing.T, raw string, threshold int64) *Message {
	t.Helper()
	m, err := ReadMessage(strings.NewReader(raw), NewSpool(t.TempDir(), threshold))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func body(t *testing.T, m *Message) string {
	t.Helper()
	r, err := m.Body.Open()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r)
	return string(b)
}

func TestReadMessage(t *testing.T) {
	tests := []struct {
		name   string
		raw    string
		fields []Field
		body   string
	}{
		{"crlf", "From: a@b\r\nSubject: hi\r\n\r\nbody\r\n", []Field{{"From", " a@b"}, {"Subject", " hi"}}, "body\r\n"},
		{"lf", "From: a@b\nSubject: hi\n\nbody\n", []Field{{"From", " a@b"}, {"Subject", " hi"}}, "body\n"},
		{"folded", "Subject: one\r\n\ttwo\r\n  three\r\n\r\nx", []Field{{"Subject", " one\r\n\ttwo\r\n  three"}}, "x"},
		{"no space after colon", "X-A:b\r\n\r\n", []Field{{"X-A", "b"}}, ""},
		{"no body", "From: a@b\r\n", []Field{{"From", " a@b"}}, ""},
		{"non-header line starts the body", "From: a@b\nnot a header\nSubject: x\n\nrest\n", []Field{{"From", " a@b"}}, "not a header\nSubject: x\n\nrest\n"},
		{"empty", "", nil, ""},
		{"body only", "\r\nhello\r\n", nil, "hello\r\n"},
		{"continuation first is body", " leading space\r\n", nil, " leading space\r\n"},
		{"nul and 8-bit", "Subject: caf\xc3\xa9\x00\r\n\r\n\xff\x00", []Field{{"Subject", " caf\xc3\xa9\x00"}}, "\xff\x00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := read(t, tt.raw, 1<<20)
			if len(m.Header) != len(tt.fields) {
				t.Fatalf("fields %q, want %q", m.Header, tt.fields)
			}
			for i := range tt.fields {
				if m.Header[i] != tt.fields[i] {
					t.Errorf("field %d = %q, want %q", i, m.Header[i], tt.fields[i])
				}
			}
			if got := body(t, m); got != tt.body {
				t.Errorf("body %q, want %q", got, tt.body)
			}
		})
	}
}

// Size is exactly the number of bytes Open yields: Content-Length in spamd and rspamd
// requests depends on it.
func TestSizeMatchesOpen(t *testing.T) {
	for _, raw := range []string{
		"From: a@b\r\nSubject: hi\r\n\r\nbody\r\n",
		"From: a@b\nSubject: one\n two\n\nbody\n",
		"Subject: x\r\n\tfolded\r\n\r\n",
		"",
	} {
		m := read(t, raw, 1<<20)
		m.Header = append(m.Header, Field{"X-Milter", " folded\n\tby postfix"})
		r, _ := m.Open()
		b, _ := io.ReadAll(r)
		if int64(len(b)) != m.Size() {
			t.Errorf("%q: Size %d, Open gave %d bytes: %q", raw, m.Size(), len(b), b)
		}
	}
}

func TestSpoolToFile(t *testing.T) {
	dir := t.TempDir()
	s := NewSpool(dir, 10)
	s.Write([]byte("0123456789"))
	if s.OnDisk() {
		t.Fatal("on disk at the threshold")
	}
	s.Write([]byte("abc"))
	if !s.OnDisk() || s.Size() != 13 {
		t.Fatalf("on disk %v size %d", s.OnDisk(), s.Size())
	}
	b := s.Body()
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("spool files %v", ents)
	}
	fi, _ := ents[0].Info()
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("spool file mode %v", fi.Mode().Perm())
	}
	// two readers at once, each from the start
	r1, _ := b.Open()
	r2, _ := b.Open()
	x1, _ := io.ReadAll(r1)
	x2, _ := io.ReadAll(r2)
	if string(x1) != "0123456789abc" || !bytes.Equal(x1, x2) {
		t.Fatalf("read %q %q", x1, x2)
	}
	if err := b.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := b.Remove(); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("spool file left: %v", ents)
	}
	if _, err := b.Open(); err == nil {
		t.Fatal("Open after Remove succeeded")
	}
}

func TestSpoolDiscard(t *testing.T) {
	dir := t.TempDir()
	s := NewSpool(dir, 1)
	s.Write([]byte("abc"))
	s.Discard()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("spool file left after Discard: %v", ents)
	}
}

func TestFold(t *testing.T) {
	long := strings.Repeat("word ", 40)
	f := Fold(len("X-FPSafe-Report"), long+"\r\nX-Injected: yes\x00")
	if strings.Contains(f, "\r\nX-Injected") || strings.ContainsRune(f, 0) {
		t.Fatalf("control characters survived: %q", f)
	}
	for i, line := range strings.Split(f, "\r\n") {
		if len(line) > 78 {
			t.Errorf("line %d is %d long", i, len(line))
		}
		if i > 0 && !strings.HasPrefix(line, "\t") {
			t.Errorf("continuation line %d does not start with a tab: %q", i, line)
		}
	}
	if got := strings.Join(strings.Fields(f), " "); got != strings.TrimSpace(strings.Repeat("word ", 40))+" X-Injected: yes" {
		t.Fatalf("folding changed the words: %q", got)
	}
}

func TestFromAddresses(t *testing.T) {
	for raw, want := range map[string]struct {
		addrs, fields int
		ok            bool
	}{
		"From: Alice <Alice@Example.org>\r\n\r\n":                  {1, 1, true},
		"From: a@x.example, b@y.example\r\n\r\n":                   {2, 1, true},
		"From: a@x.example\r\nFrom: b@y.example\r\n\r\n":           {2, 2, true},
		"Subject: none\r\n\r\n":                                    {0, 0, true},
		"From: not an address <<<\r\n\r\n":                         {0, 1, false},
		"From: =?utf-8?q?Andr=C3=A9?= <andre@example.org>\r\n\r\n": {1, 1, true},
	} {
		m := read(t, raw, 1<<20)
		addrs, n, ok := FromAddresses(m)
		if len(addrs) != want.addrs || n != want.fields || ok != want.ok {
			t.Errorf("%q: %v %d %v, want %+v", raw, addrs, n, ok, want)
		}
	}
	if d := AddressDomain("<Alice@Example.ORG.>"); d != "example.org" {
		t.Errorf("AddressDomain: %q", d)
	}
}

// A shared budget sends bodies to files once it is spent, and gets its bytes back when the
// bodies are removed or discarded.
func TestSpoolBudget(t *testing.T) {
	dir := t.TempDir()
	b := NewBudget(100)
	s1 := NewSpool(dir, 1000).WithBudget(b)
	s1.Write(make([]byte, 80))
	s2 := NewSpool(dir, 1000).WithBudget(b)
	s2.Write(make([]byte, 30)) // would pass 100: to a file
	if s1.OnDisk() || !s2.OnDisk() || b.Used() != 80 {
		t.Fatalf("on disk %v %v, used %d", s1.OnDisk(), s2.OnDisk(), b.Used())
	}
	s1.Body().Remove()
	s2.Body().Remove()
	if b.Used() != 0 {
		t.Fatalf("used %d after Remove", b.Used())
	}
	s3 := NewSpool(dir, 1000).WithBudget(b)
	s3.Write(make([]byte, 50))
	s3.Write(make([]byte, 60)) // spills: what it held in memory is given back
	if !s3.OnDisk() || b.Used() != 0 {
		t.Fatalf("on disk %v used %d", s3.OnDisk(), b.Used())
	}
	s3.Discard()
	s4 := NewSpool(dir, 1000).WithBudget(b)
	s4.Write(make([]byte, 10))
	s4.Discard()
	if b.Used() != 0 {
		t.Fatalf("used %d after Discard", b.Used())
	}
}

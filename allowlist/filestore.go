package allowlist

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// FileStore keeps the List of one allowlist file current. Lookups read an immutable
// snapshot through an atomic pointer and never wait. A new version of the file replaces the
// snapshot only when it is valid: an invalid edit is logged with its file:line and reason,
// reported by LastError, and the last good list stays active.
//
// Changes made through Add, Remove and Import rewrite the file atomically (a temporary file
// in the same directory, with the old file's mode and, when permitted, owner, renamed over
// it), after appending their record to the audit trail (AuditPath). They refuse to run while
// the file on disk is invalid, and when the file changes under them. Comments and layout of
// the file are kept: Add appends a table, Remove cuts the lines of its entry's table (the
// comments around it stay). FileStore serializes its own writers; two processes editing the
// same file at the same moment are detected only by the changed-file check.
type FileStore struct {
	path     string
	log      *slog.Logger
	interval time.Duration    // poll period of Run
	now      func() time.Time // for tests

	cur atomic.Pointer[List]

	mu       sync.Mutex // serializes loads and rewrites, guards the fields below
	seen     fileSig    // the version last loaded or refused
	pending  fileSig    // a new version seen by the last poll, loaded once it stays the same
	lastErr  error
	loadedAt time.Time
}

// fileSig identifies a version of the file: inode (via os.SameFile), size and mtime.
type fileSig struct {
	fi os.FileInfo
}

func (a fileSig) same(b fileSig) bool {
	return a.fi != nil && b.fi != nil && os.SameFile(a.fi, b.fi) &&
		a.fi.Size() == b.fi.Size() && a.fi.ModTime().Equal(b.fi.ModTime())
}

// NewFileStore loads path, which must exist and be valid. log may be nil.
func NewFileStore(path string, log *slog.Logger) (*FileStore, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &FileStore{path: path, log: log, interval: time.Second, now: time.Now}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Path is the allowlist file.
func (s *FileStore) Path() string { return s.path }

// Snapshot returns the active list.
func (s *FileStore) Snapshot() *List { return s.cur.Load() }

// Lookup looks id up in the active list; FileStore is a policy.Allowlist.
func (s *FileStore) Lookup(id Identity, rcpts []string, now time.Time) *Match {
	return s.cur.Load().Lookup(id, rcpts, now)
}

// LastError is why the newest version of the file was refused, or nil when the active list
// is the file's current content.
func (s *FileStore) LastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// LoadedAt is when the active list was loaded.
func (s *FileStore) LoadedAt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loadedAt
}

// Reload reads the file now (for SIGHUP). On error the last good list stays active and the
// error is also kept for LastError.
func (s *FileStore) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.load()
}

// Run polls the file's inode, size and mtime every second and reloads it once a change has
// stayed the same for one poll (so within about two seconds of a save), until ctx is done;
// it then returns nil. A refused version is logged once, not every second.
func (s *FileStore) Run(ctx context.Context) error {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.poll()
		}
	}
}

func (s *FileStore) poll() {
	fi, err := os.Stat(s.path)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if s.seen.fi != nil || s.lastErr == nil { // not reported yet
			s.load()
		}
		return
	}
	sig := fileSig{fi}
	switch {
	case s.seen.same(sig):
		s.pending = fileSig{}
	case !s.pending.same(sig):
		// Changed since the last poll: wait until it stays the same for one interval, so
		// that a file being written in place (truncated, then filled) is not loaded half
		// written; an empty or cut-short file can be valid.
		s.pending = sig
	default:
		s.pending = fileSig{}
		s.load()
	}
}

// load reads and parses the file; s.mu is held.
func (s *FileStore) load() error {
	l, sig, err := s.read()
	if sig.fi != nil || !errors.Is(err, errChanging) {
		s.seen = sig
	}
	if err != nil {
		s.lastErr = err
		if s.cur.Load() != nil {
			s.log.Error("allowlist: new version refused; the last good list stays active", "path", s.path, "err", err,
				"active_since", s.loadedAt)
		}
		return err
	}
	s.cur.Store(l)
	s.lastErr = nil
	s.loadedAt = s.now()
	s.log.Info("allowlist loaded", "path", s.path, "entries", l.Len(), "expired", len(l.Expired(s.loadedAt)))
	fs := Lint(l, s.loadedAt)
	for i, f := range fs {
		if i == maxLoggedFindings {
			s.log.Warn("allowlist lint: more findings not logged", "path", s.path, "more", len(fs)-i)
			break
		}
		s.log.Warn("allowlist lint", "finding", f.String())
	}
	return nil
}

// maxLoggedFindings caps the lint findings logged at each load.
const maxLoggedFindings = 50

var errChanging = errors.New("the file is still being written")

// read reads and parses the file, making sure it did not change while being read (it tries
// three times). The signature returned is that of the version read.
func (s *FileStore) read() (*List, fileSig, error) {
	for attempt := 1; ; attempt++ {
		fi, err := os.Stat(s.path)
		if err != nil {
			return nil, fileSig{}, fmt.Errorf("allowlist: %w", err)
		}
		b, err := os.ReadFile(s.path)
		if err != nil {
			return nil, fileSig{fi}, fmt.Errorf("allowlist: %w", err)
		}
		after, err := os.Stat(s.path)
		if err == nil && (fileSig{fi}).same(fileSig{after}) {
			l, err := Parse(string(b), s.path)
			return l, fileSig{fi}, err
		}
		if attempt == 3 {
			return nil, fileSig{}, fmt.Errorf("allowlist: %s: %w", s.path, errChanging)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Add appends e to the file and records it in the audit trail as who's. e must be complete
// (reason and owner included) and not expired; an unset Added is today (UTC).
func (s *FileStore) Add(e Entry, who string) error {
	return s.add([]Entry{e}, who, AuditAdd, "")
}

// Import appends several entries at once, each recorded in the audit trail as an import by
// who for reason. Either all are added or none.
func (s *FileStore) Import(entries []Entry, who, reason string) error {
	if strings.TrimSpace(reason) == "" {
		return errors.New("allowlist: import: a reason is required for the audit trail")
	}
	return s.add(entries, who, AuditImport, reason)
}

func (s *FileStore) add(entries []Entry, who, action, reason string) error {
	now := s.now()
	entries, err := prepareChange(entries, who, action, now)
	if err != nil {
		return err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	text, fi, cur, err := s.current()
	if err != nil {
		return err
	}
	if _, err := NewList(append(cur.Entries(), entries...)); err != nil {
		return fmt.Errorf("allowlist: %s: %w", action, err)
	}
	var b strings.Builder
	b.WriteString(text)
	if text != "" && !strings.HasSuffix(text, "\n") {
		b.WriteByte('\n')
	}
	recs := make([]AuditRecord, len(entries))
	for i := range entries {
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(renderEntry(&entries[i]))
		why := reason
		if why == "" {
			why = entries[i].Reason
		}
		recs[i] = AuditRecord{Time: now.UTC(), Who: who, Action: action, ID: entries[i].ID, Entry: &entries[i], Reason: why}
	}
	want := append(cur.Entries(), entries...)
	if err := s.commit(b.String(), fi, want, recs); err != nil {
		return err
	}
	for _, e := range entries {
		s.log.Info("allowlist entry added", "path", s.path, "entry", e.ID, "match", e.Match, "require", e.Require, "who", who, "action", action)
	}
	return s.load()
}

// Remove deletes the entry id from the file and records it, with who and reason, in the
// audit trail.
func (s *FileStore) Remove(id, who, reason string) error {
	switch {
	case strings.TrimSpace(who) == "":
		return errors.New("allowlist: remove: who is required for the audit trail")
	case strings.TrimSpace(reason) == "":
		return errors.New("allowlist: remove: a reason is required for the audit trail")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	text, fi, cur, err := s.current()
	if err != nil {
		return err
	}
	e, ok := cur.Entry(id)
	if !ok {
		return fmt.Errorf("allowlist: remove: no entry %q in %s", id, s.path)
	}
	if e.Line == 0 {
		return fmt.Errorf("allowlist: remove: entry %q is not written as an [[entry]] table; edit %s by hand", id, s.path)
	}
	var want []Entry
	for _, x := range cur.Entries() {
		if x.ID != id {
			want = append(want, x)
		}
	}
	line := e.Line
	e.Line = 0
	rec := AuditRecord{Time: s.now().UTC(), Who: who, Action: AuditRemove, ID: id, Entry: &e, Reason: reason}
	if err := s.commit(cutEntry(text, line), fi, want, []AuditRecord{rec}); err != nil {
		return err
	}
	s.log.Info("allowlist entry removed", "path", s.path, "entry", id, "who", who, "reason", reason)
	return s.load()
}

// current reads the file for a rewrite, which it must be valid for.
func (s *FileStore) current() (string, os.FileInfo, *List, error) {
	fi, err := os.Stat(s.path)
	if err != nil {
		return "", nil, nil, fmt.Errorf("allowlist: %w", err)
	}
	b, err := os.ReadFile(s.path)
	if err != nil {
		return "", nil, nil, fmt.Errorf("allowlist: %w", err)
	}
	l, err := Parse(string(b), s.path)
	if err != nil {
		return "", nil, nil, fmt.Errorf("allowlist: the file is invalid; fix it before changing it through fpsafe: %w", err)
	}
	return string(b), fi, l, nil
}

// commit checks that text parses to exactly want, appends recs to the audit trail and
// replaces the file with text atomically. fi is the version text was derived from.
func (s *FileStore) commit(text string, fi os.FileInfo, want []Entry, recs []AuditRecord) error {
	got, err := Parse(text, s.path)
	if err != nil {
		return fmt.Errorf("allowlist: the rewritten file would be invalid, nothing changed: %w", err)
	}
	if !sameEntries(got.Entries(), want) {
		return fmt.Errorf("allowlist: cannot rewrite %s safely (unusual layout); nothing changed: edit it by hand", s.path)
	}

	dir, base := filepath.Split(s.path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("allowlist: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	_, werr := tmp.WriteString(text)
	merr := tmp.Chmod(fi.Mode().Perm())
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		_ = tmp.Chown(int(st.Uid), int(st.Gid)) // best effort: only root may give files away
	}
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, merr, serr, cerr); err != nil {
		return fmt.Errorf("allowlist: writing %s: %w", tmp.Name(), err)
	}

	now, err := os.Stat(s.path)
	if err != nil || !(fileSig{fi}).same(fileSig{now}) {
		return fmt.Errorf("allowlist: %s changed on disk while being edited; nothing changed, try again", s.path)
	}
	if err := appendAudit(s.path, fi.Mode(), recs...); err != nil {
		return fmt.Errorf("allowlist: nothing changed: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		fail := make([]AuditRecord, len(recs))
		for i, r := range recs {
			fail[i] = AuditRecord{Time: s.now().UTC(), Who: r.Who, Action: AuditFailed, ID: r.ID, Reason: r.Action + " not applied: " + err.Error()}
		}
		if aerr := appendAudit(s.path, fi.Mode(), fail...); aerr != nil {
			err = errors.Join(err, aerr)
		}
		return fmt.Errorf("allowlist: nothing changed: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// cutEntry removes the table whose [[entry]] header is at line (1-based) from text: its
// header and keys, up to the next table header, keeping the blank and comment lines just
// before that header (they introduce the next table) and dropping one blank line before
// the header cut.
func cutEntry(text string, line int) string {
	lines := strings.SplitAfter(text, "\n")
	start := line - 1
	end := len(lines)
	scanLines(text, func(n int, l string) {
		if n > line && n-1 < end && tableHeaderRE.MatchString(l) {
			end = n - 1
		}
	})
	for end-1 > start {
		t := strings.TrimSpace(lines[end-1])
		if t != "" && !strings.HasPrefix(t, "#") {
			break
		}
		end--
	}
	if start > 0 && strings.TrimSpace(lines[start-1]) == "" {
		start--
	}
	return strings.Join(lines[:start], "") + strings.Join(lines[end:], "")
}

// renderEntry writes e as an [[entry]] table.
func renderEntry(e *Entry) string {
	var b strings.Builder
	kv := func(k, v string) { fmt.Fprintf(&b, "%-7s = %s\n", k, v) }
	b.WriteString("[[entry]]\n")
	kv("id", tomlQuote(e.ID))
	kv("match", tomlQuote(e.Match))
	kv("require", tomlQuote(e.Require))
	if len(e.IPs) > 0 {
		q := make([]string, len(e.IPs))
		for i, ip := range e.IPs {
			q[i] = tomlQuote(ip)
		}
		kv("ips", "["+strings.Join(q, ", ")+"]")
	}
	kv("reason", tomlQuote(e.Reason))
	kv("owner", tomlQuote(e.Owner))
	kv("added", e.Added.String())
	if !e.Expires.IsZero() {
		kv("expires", e.Expires.String())
	}
	if e.Ticket != "" {
		kv("ticket", tomlQuote(e.Ticket))
	}
	return b.String()
}

// tomlQuote writes s as a TOML basic string.
func tomlQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\u%04X`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

func cloneEntries(es []Entry) []Entry {
	out := make([]Entry, len(es))
	for i, e := range es {
		e.IPs = append([]string(nil), e.IPs...)
		out[i] = e
	}
	return out
}

// sameEntries compares entries field by field, ignoring Line.
func sameEntries(a, b []Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.ID != y.ID || x.Match != y.Match || x.Require != y.Require || x.Reason != y.Reason ||
			x.Owner != y.Owner || x.Ticket != y.Ticket || !x.Added.Time().Equal(y.Added.Time()) ||
			!x.Expires.Time().Equal(y.Expires.Time()) ||
			strings.Join(x.IPs, "\x00") != strings.Join(y.IPs, "\x00") || len(x.IPs) != len(y.IPs) {
			return false
		}
	}
	return true
}

// Audit returns the file's audit trail, oldest first.
func (s *FileStore) Audit() ([]AuditRecord, error) { return ReadAudit(s.path) }

var _ Store = (*FileStore)(nil)

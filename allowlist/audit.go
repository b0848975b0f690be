package allowlist

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Audit actions.
const (
	AuditAdd    = "add"
	AuditRemove = "remove"
	AuditImport = "import"
	// AuditFailed follows a record whose change could not be applied after it was logged
	// (the rename of the rewritten file failed): the file is unchanged.
	AuditFailed = "failed"
)

// AuditRecord is one line of an allowlist's audit trail, PATH.audit.log beside the file:
// JSON, one record a line, appended and synced before the rewritten allowlist file replaces
// the old one, so that no change made through FileStore goes unrecorded. Hand edits of the
// file are not in the trail; FileStore logs every reload.
type AuditRecord struct {
	Time   time.Time `json:"time"`
	Who    string    `json:"who"`
	Action string    `json:"action"` // add, remove, import, failed
	ID     string    `json:"id"`
	Entry  *Entry    `json:"entry,omitempty"` // the entry added or removed
	Reason string    `json:"reason,omitempty"`
}

// AuditPath returns the audit trail of the allowlist file path.
func AuditPath(path string) string { return path + ".audit.log" }

// appendAudit appends records to the audit trail of path and syncs it. The trail is created
// with mode, the allowlist file's, when it does not exist.
func appendAudit(path string, mode os.FileMode, recs ...AuditRecord) error {
	var buf []byte
	for _, r := range recs {
		b, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		buf = append(append(buf, b...), '\n')
	}
	f, err := os.OpenFile(AuditPath(path), os.O_WRONLY|os.O_APPEND|os.O_CREATE, mode.Perm()&0o666)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	_, werr := f.Write(buf)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return fmt.Errorf("audit: %s: %w", AuditPath(path), err)
	}
	return nil
}

// ReadAudit reads the audit trail of the allowlist file path, oldest first. A missing trail
// is empty.
func ReadAudit(path string) ([]AuditRecord, error) {
	f, err := os.Open(AuditPath(path))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	var out []AuditRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for n := 1; sc.Scan(); n++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var r AuditRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return out, fmt.Errorf("audit: %s:%d: %w", AuditPath(path), n, err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("audit: %s: %w", AuditPath(path), err)
	}
	return out, nil
}

// prepareChange checks entries about to be added by who (action add or import), the same
// way for every store: an author for the audit trail, a reason and an owner on every entry,
// nothing already expired. It returns copies with Added defaulted to today (UTC).
func prepareChange(entries []Entry, who, action string, now time.Time) ([]Entry, error) {
	if strings.TrimSpace(who) == "" {
		return nil, fmt.Errorf("allowlist: %s: who is required for the audit trail", action)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("allowlist: %s: no entries", action)
	}
	entries = cloneEntries(entries)
	for i := range entries {
		e := &entries[i]
		e.Line = 0
		if e.Added.IsZero() {
			e.Added = DateOf(now)
		}
		switch {
		case strings.TrimSpace(e.Reason) == "":
			return nil, fmt.Errorf("allowlist: %s: entry %q: reason is missing", action, e.ID)
		case strings.TrimSpace(e.Owner) == "":
			return nil, fmt.Errorf("allowlist: %s: entry %q: owner is missing", action, e.ID)
		case e.Expired(now):
			return nil, fmt.Errorf("allowlist: %s: entry %q: expires = %s is already past", action, e.ID, e.Expires)
		}
	}
	return entries, nil
}

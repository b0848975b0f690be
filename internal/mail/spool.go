package mail

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
)

// Body is a message body that can be read any number of times, by several readers at once.
type Body interface {
	// Open returns a new reader positioned at the start of the body.
	Open() (io.ReadCloser, error)
	// Size is the body's length in bytes.
	Size() int64
	// Remove releases the body's storage; a spool file is deleted. Safe to call twice.
	Remove() error
}

// BytesBody is a body held in memory.
type BytesBody []byte

// Open implements Body.
func (b BytesBody) Open() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }

// Size implements Body.
func (b BytesBody) Size() int64 { return int64(len(b)) }

// Remove implements Body; memory is left to the garbage collector.
func (b BytesBody) Remove() error { return nil }

// Spool collects a body as it arrives in chunks: in memory up to a threshold, then in a
// private temp file, so that a 100 MB message costs disk rather than RAM.
// It is not safe for concurrent writes; the Body it produces is safe for concurrent reads.
type Spool struct {
	dir       string
	threshold int64
	budget    *Budget
	buf       bytes.Buffer
	file      *os.File
	size      int64
}

// Budget bounds the body bytes that all the spools sharing it keep in memory together, so
// that many concurrent messages cannot add up to more RAM than the admin allowed: past the
// budget, bodies go to spool files. It is safe for concurrent use.
type Budget struct {
	limit int64
	used  atomic.Int64
}

// NewBudget returns a budget of limit bytes.
func NewBudget(limit int64) *Budget { return &Budget{limit: limit} }

// Used is the number of bytes held in memory now.
func (b *Budget) Used() int64 { return b.used.Load() }

func (b *Budget) reserve(n int64) bool {
	if b == nil {
		return true
	}
	if b.used.Add(n) > b.limit {
		b.used.Add(-n)
		return false
	}
	return true
}

func (b *Budget) release(n int64) {
	if b != nil && n > 0 {
		b.used.Add(-n)
	}
}

// NewSpool returns a spool that keeps up to threshold bytes in memory and writes larger
// bodies to a file created mode 0600 in dir ("" = the system temp dir).
func NewSpool(dir string, threshold int64) *Spool {
	return &Spool{dir: dir, threshold: threshold}
}

// WithBudget makes the spool also count its memory against b: when b is spent, the body
// goes to a file even below the threshold.
func (s *Spool) WithBudget(b *Budget) *Spool {
	s.budget = b
	return s
}

// Write appends p to the body.
func (s *Spool) Write(p []byte) (int, error) {
	s.size += int64(len(p))
	if s.file == nil && int64(s.buf.Len()+len(p)) <= s.threshold && s.budget.reserve(int64(len(p))) {
		return s.buf.Write(p)
	}
	if s.file == nil {
		f, err := os.CreateTemp(s.dir, "fpsafe-body-*")
		if err != nil {
			return 0, fmt.Errorf("spool: %w", err)
		}
		s.file = f
		if _, err := f.Write(s.buf.Bytes()); err != nil {
			return 0, fmt.Errorf("spool %s: %w", f.Name(), err)
		}
		s.budget.release(int64(s.buf.Len()))
		s.buf = bytes.Buffer{}
	}
	n, err := s.file.Write(p)
	if err != nil {
		err = fmt.Errorf("spool %s: %w", s.file.Name(), err)
	}
	return n, err
}

// Size is the number of bytes written so far.
func (s *Spool) Size() int64 { return s.size }

// OnDisk reports whether the body went to a spool file.
func (s *Spool) OnDisk() bool { return s.file != nil }

// Body ends writing and returns the collected body. The spool must not be written after.
func (s *Spool) Body() Body {
	if s.file == nil {
		if s.budget == nil {
			return BytesBody(s.buf.Bytes())
		}
		return &memBody{BytesBody: s.buf.Bytes(), budget: s.budget}
	}
	return &fileBody{f: s.file, size: s.size}
}

// Discard removes whatever the spool holds: for a message that was aborted.
func (s *Spool) Discard() {
	if s.file != nil {
		(&fileBody{f: s.file}).Remove()
		s.file = nil
	}
	s.budget.release(int64(s.buf.Len()))
	s.buf = bytes.Buffer{}
	s.size = 0
}

// memBody is an in-memory body counted against a Budget until it is removed.
type memBody struct {
	BytesBody
	budget *Budget
	once   sync.Once
}

func (b *memBody) Remove() error {
	b.once.Do(func() { b.budget.release(int64(len(b.BytesBody))) })
	return nil
}

// fileBody is a spooled body; readers use ReadAt so several can share one descriptor.
type fileBody struct {
	mu      sync.Mutex
	f       *os.File
	size    int64
	removed bool
}

func (b *fileBody) Open() (io.ReadCloser, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.removed {
		return nil, fmt.Errorf("spool %s: body already removed", b.f.Name())
	}
	return io.NopCloser(io.NewSectionReader(b.f, 0, b.size)), nil
}

func (b *fileBody) Size() int64 { return b.size }

func (b *fileBody) Remove() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.removed {
		return nil
	}
	b.removed = true
	cerr := b.f.Close()
	if err := os.Remove(b.f.Name()); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("spool: %w", err)
	}
	return cerr
}

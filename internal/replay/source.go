// Package replay runs stored mail — a Maildir, an mbox file, a folder of .eml files or one
// message — through fpsafe's pipeline offline and reports what would happen to it: how many
// messages would be delivered, tagged and quarantined, which ones, and, between two configs,
// which messages would change action. `fpsafe replay` is its command line; see docs/replay.md.
//
// With NoEngines no engine is contacted: each message's verdicts are rebuilt from the
// X-FPSafe-Report (or X-Spam-*) fields it already carries (see Recorded), so a policy change
// can be judged on a mailbox in seconds.
package replay

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Source kinds.
const (
	KindMaildir = "maildir" // a directory with cur/ and/or new/ (Maildir++ subfolders included)
	KindMbox    = "mbox"    // one file of messages separated by "From " lines
	KindEML     = "eml"     // a directory tree of *.eml files
	KindFile    = "file"    // one message file
)

// Source is a place messages are read from. Open finds out which kind PATH is.
type Source struct {
	Path  string
	Kind  string
	files []string // message files (Maildir, eml, file), relative to Path for directories
}

// Open inspects path and returns the source it is. It fails only when path cannot be read;
// a directory holding no message is a source of zero messages.
func Open(path string) (*Source, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	s := &Source{Path: path}
	if !st.IsDir() {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		head := make([]byte, 5)
		n, err := io.ReadFull(f, head)
		if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
			return nil, err
		}
		if string(head[:n]) == "From " {
			s.Kind = KindMbox
		} else {
			s.Kind, s.files = KindFile, []string{path}
		}
		return s, nil
	}
	if isMaildir(path) {
		s.Kind = KindMaildir
		s.files, err = maildirFiles(path)
	} else {
		s.Kind = KindEML
		s.files, err = emlFiles(path)
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

func isMaildir(p string) bool {
	return isDir(filepath.Join(p, "cur")) || isDir(filepath.Join(p, "new"))
}

// maildirFiles lists new/ and cur/ of the Maildir and of its Maildir++ subfolders (".Sent",
// ".Archive.2024", ...). tmp/ holds deliveries in progress and is left alone.
func maildirFiles(root string) ([]string, error) {
	dirs := []string{""}
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), ".") && e.Name() != "." && e.Name() != ".." && isMaildir(filepath.Join(root, e.Name())) {
			dirs = append(dirs, e.Name())
		}
	}
	var files []string
	for _, d := range dirs {
		for _, sub := range []string{"new", "cur"} {
			rel := filepath.Join(d, sub)
			ents, err := os.ReadDir(filepath.Join(root, rel))
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, err
			}
			for _, e := range ents {
				if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
					files = append(files, filepath.Join(rel, e.Name()))
				}
			}
		}
	}
	return files, nil
}

// emlFiles lists the *.eml files under root, recursively, in lexical order.
func emlFiles(root string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == root {
				return err
			}
			files = append(files, mustRel(root, p)) // unreadable subdirectory: reported as such
			return nil
		}
		if d.Type().IsRegular() && strings.EqualFold(filepath.Ext(p), ".eml") {
			files = append(files, mustRel(root, p))
		}
		return nil
	})
	sort.Strings(files)
	return files, err
}

func mustRel(root, p string) string {
	r, err := filepath.Rel(root, p)
	if err != nil {
		return p
	}
	return r
}

// Count returns the number of messages in the source. For an mbox it reads the file once.
func (s *Source) Count() (int, error) {
	if s.Kind != KindMbox {
		return len(s.files), nil
	}
	f, err := os.Open(s.Path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	mr := newMboxReader(f)
	n := 0
	for mr.Next() {
		if _, err := io.Copy(io.Discard, mr); err != nil {
			return n, err
		}
		n++
	}
	return n, mr.Err()
}

// item is one message to read: a file (opened by the worker that decides it) or a message
// already cut out of an mbox.
type item struct {
	index int    // 1-based position in the source
	name  string // file path relative to the source, or "mbox#N"
	file  string // path to open; "" for mbox messages
	r     io.Reader
}

// each calls fn for every message, in order. For an mbox, fn must consume item.r before it
// returns. The error is the source's own (the mbox could not be read on), not fn's.
func (s *Source) each(fn func(item) bool) error {
	if s.Kind != KindMbox {
		for i, f := range s.files {
			p := f
			if s.Kind != KindFile {
				p = filepath.Join(s.Path, f)
			}
			if !fn(item{index: i + 1, name: f, file: p}) {
				return nil
			}
		}
		return nil
	}
	f, err := os.Open(s.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	mr := newMboxReader(f)
	for i := 1; mr.Next(); i++ {
		if !fn(item{index: i, name: fmt.Sprintf("%s#%d", filepath.Base(s.Path), i), r: mr}) {
			return nil
		}
		io.Copy(io.Discard, mr) // whatever fn left unread
	}
	return mr.Err()
}

// mboxReader cuts an mbox into messages. A message starts after a "From " line that is the
// file's first line or follows an empty line; the empty line before a "From " line belongs
// to the mbox format and is dropped. Body lines escaped as ">From ", ">>From ", ... (mboxrd;
// mboxo's ">From " too) lose one ">". Reading a message streams: memory is one line.
type mboxReader struct {
	br      *bufio.Reader
	pending []byte // a line read ahead, not yet returned
	buf     []byte // bytes of the current message ready for Read
	inMsg   bool   // Next has started a message that has not ended
	atStart bool   // the next line is the first of the file
	sep     bool   // the line read ahead is the next message's "From " line
	lineEnd bool   // the last chunk returned ended a line (so the next chunk starts one)
	err     error
}

func newMboxReader(r io.Reader) *mboxReader {
	return &mboxReader{br: bufio.NewReaderSize(r, 64<<10), atStart: true, lineEnd: true}
}

// readLine returns the next line with its line end, or a chunk of a very long line; ok is
// false at the end of the file.
func (m *mboxReader) readLine() (line []byte, ok bool) {
	if m.pending != nil {
		line, m.pending = m.pending, nil
		return line, true
	}
	if m.err != nil {
		return nil, false
	}
	l, err := m.br.ReadSlice('\n')
	if err != nil && err != bufio.ErrBufferFull {
		if err != io.EOF {
			m.err = err
		} else {
			m.err = io.EOF
		}
		if len(l) == 0 {
			return nil, false
		}
	}
	return append([]byte(nil), l...), true
}

func isFromLine(l []byte) bool { return bytes.HasPrefix(l, []byte("From ")) }

func isBlank(l []byte) bool {
	return len(bytes.TrimRight(l, "\r\n")) == 0 && bytes.HasSuffix(l, []byte("\n"))
}

// Next skips to the next message; false when there is none.
func (m *mboxReader) Next() bool {
	if m.inMsg { // drain the rest of the current message
		io.Copy(io.Discard, m)
	}
	m.buf = nil
	for {
		l, ok := m.readLine()
		if !ok {
			return false
		}
		startsLine := m.lineEnd
		m.lineEnd = bytes.HasSuffix(l, []byte("\n"))
		if startsLine && isFromLine(l) && (m.atStart || m.sep) {
			m.atStart, m.sep, m.inMsg = false, false, true
			for !m.lineEnd { // the rest of an overlong From_ line
				l, ok = m.readLine()
				if !ok {
					return true
				}
				m.lineEnd = bytes.HasSuffix(l, []byte("\n"))
			}
			return true
		}
		m.atStart = false
		// Text before the first "From " line is not a message: skip it.
		m.sep = startsLine && isBlank(l)
	}
}

// Read implements io.Reader over the current message.
func (m *mboxReader) Read(p []byte) (int, error) {
	for len(m.buf) == 0 {
		if !m.inMsg {
			return 0, io.EOF
		}
		l, ok := m.readLine()
		if !ok {
			m.inMsg = false
			return 0, io.EOF
		}
		startsLine := m.lineEnd
		m.lineEnd = bytes.HasSuffix(l, []byte("\n"))
		if startsLine && isBlank(l) {
			next, ok := m.readLine()
			if !ok || isFromLine(next) { // the blank line is the separator's (or ends the file)
				m.pending, m.sep, m.inMsg = next, ok, false
				return 0, io.EOF
			}
			m.pending, m.buf = next, l
			continue
		}
		if startsLine && l[0] == '>' {
			if t := bytes.TrimLeft(l, ">"); isFromLine(t) {
				l = l[1:]
			}
		}
		m.buf = l
	}
	n := copy(p, m.buf)
	m.buf = m.buf[n:]
	return n, nil
}

// Err is the error that stopped reading, nil at a clean end of file.
func (m *mboxReader) Err() error {
	if m.err == io.EOF {
		return nil
	}
	return m.err
}

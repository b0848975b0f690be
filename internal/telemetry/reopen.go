package telemetry

import (
	"fmt"
	"os"
	"sync"
)

// LogFile is an append-only log file that can be reopened after logrotate moved it
// (SIGHUP), so that decision records are never written into a rotated file.
type LogFile struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

// OpenLogFile opens path for appending (mode 0640), creating it if needed.
func OpenLogFile(path string) (*LogFile, error) {
	l := &LogFile{path: path}
	return l, l.Reopen()
}

// Reopen closes and reopens the file.
func (l *LogFile) Reopen() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("decision log: %w", err)
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// Write appends p; each slog record is one Write, so records never interleave.
func (l *LogFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Write(p)
}

// Close closes the file.
func (l *LogFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}

package main

import (
	"io"
	"log"
	"log/slog"
	"strings"
)

// newLogger builds the operational logger from [log].
func newLogger(c LogConfig, w io.Writer) *slog.Logger {
	var lv slog.Level
	lv.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: lv}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// routeStdLog sends what go-milter writes with the standard log package ("Error reading
// milter command", ...) to the structured log. go-milter offers no other hook.
func routeStdLog(l *slog.Logger) {
	log.SetFlags(0)
	log.SetOutput(stdLogWriter{l})
}

type stdLogWriter struct{ l *slog.Logger }

func (w stdLogWriter) Write(p []byte) (int, error) {
	w.l.Warn(strings.TrimSpace(string(p)), "component", "go-milter")
	return len(p), nil
}

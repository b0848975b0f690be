package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Every testdata/config/bad-*.toml must be refused with the error in its .expected-error.
func TestBadConfigs(t *testing.T) {
	files, _ := filepath.Glob("../../testdata/config/bad-*.toml")
	if len(files) < 10 {
		t.Fatalf("found %d bad configs", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			want, err := os.ReadFile(strings.TrimSuffix(f, ".toml") + ".expected-error")
			if err != nil {
				t.Fatal(err)
			}
			_, err = LoadConfig(f)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), strings.TrimSpace(string(want))) {
				t.Fatalf("error %q\nwant it to contain %q", err, strings.TrimSpace(string(want)))
			}
		})
	}
}

func TestDefaultConfig(t *testing.T) {
	c, err := LoadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if c.Milter.Listen != "inet:127.0.0.1:8890" || len(c.Engines) != 0 || c.Source() != "embedded default config" {
		t.Fatalf("default config %+v", c)
	}
	// The embedded file states every default explicitly: it must equal the built-in ones.
	d := defaults()
	if c.Milter != d.Milter || c.Policy.TagScore != d.Policy.TagScore || c.Scoring.BreakerCooldown != d.Scoring.BreakerCooldown ||
		strings.Join(c.Scoring.SuspiciousSignatures, ",") != strings.Join(d.Scoring.SuspiciousSignatures, ",") {
		t.Fatalf("default.toml and defaults() disagree:\n%+v\n%+v", c, d)
	}
}

func TestEngineDefaults(t *testing.T) {
	c, err := LoadConfig("../../testdata/config/engines.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Engines) != 3 {
		t.Fatalf("engines %v", c.Engines)
	}
	clam, sa, rs := c.Engines[0], c.Engines[1], c.Engines[2]
	if clam.Timeout != 5*time.Second || clam.MaxSize != 25<<20 || *clam.Weight != 1 || clam.MaxConcurrency != 10 {
		t.Errorf("clamd defaults %+v", clam)
	}
	if *sa.Weight != 2 || sa.MaxSize != 5<<20 {
		t.Errorf("spamd %+v", sa)
	}
	if rs.Timeout != 2*time.Second || rs.MaxSize != 10<<20 {
		t.Errorf("rspamd %+v", rs)
	}
}

package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzParseConfig: parseConfig never panics on any text (TOML decoding, the unknown-key
// and error-line finders); an error names the file; and a config it returns is valid,
// with every engine's defaults already filled in.
func FuzzParseConfig(f *testing.F) {
	f.Add(defaultConfig)
	files, _ := filepath.Glob("../../testdata/config/*.toml")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	for _, s := range []string{
		"",
		"[milter]\nlisten = \"inet:0.0.0.0:8890\"\n",
		"[[engine]]\ntype = \"clamd\"\naddress = \"inet:127.0.0.1:3310\"\n[[engine]]\ntype = \"clamd\"\naddress = \"x\"\n",
		"[policy]\nstrip_headers = [\"[\"]\n",
		"[log]\nlevel = \"loud\"\n",
		"[milter]\nspool_memory = \"-1\"\n",
		"[[engine]]\nname = \"a\\\"b\"\ntype = \"x\"\n",
		"[engine]\nname = 1\n",
		"a.b.c = 1\n[x.\"y\".z]\nq = [[1], {a = 2}]\n",
		"[auth]\nauthserv_id = \"a b\"\ntimeout = \"0s\"\n",
		"[milter]\ndecision_timeout = 5\n",
		"x = \"\"\"\nmulti\n\"\"\"\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		c, err := parseConfig(text, "fuzz.toml")
		if err != nil {
			if c != nil {
				t.Fatalf("error %v with a config", err)
			}
			if !strings.HasPrefix(err.Error(), "fuzz.toml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if c == nil {
			t.Fatal("nil config without an error")
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted config does not validate: %v", err)
		}
		for i, e := range c.Engines {
			if d := e.WithDefaults(); !reflect.DeepEqual(d, e) {
				t.Fatalf("engine %d %+v lacks its defaults %+v", i, e, d)
			}
		}
		c.Source()
	})
}

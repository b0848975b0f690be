package main

import (
	"fmt"
	"io"

	"github.com/BurntSushi/toml"

	"github.com/fpsafe/fpsafe/allowlist"
)

// cmdConfigCheck validates a config and prints the effective config (defaults filled in)
// as TOML; exit status 2 when it is invalid, with the file, line and reason.
func cmdConfigCheck(args []string, stdout, stderr io.Writer) int {
	fs, cfgPath := newFlagSet("config check", stderr)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := LoadConfig(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "fpsafe config check:", err)
		return 2
	}
	fmt.Fprintf(stdout, "# %s: OK\n", cfg.Source())
	cfg.Allowlist.Redis = allowlist.RedactURL(cfg.Allowlist.Redis) // never print a secret
	if err := toml.NewEncoder(stdout).Encode(cfg); err != nil {
		fmt.Fprintln(stderr, "fpsafe config check:", err)
		return 1
	}
	return 0
}

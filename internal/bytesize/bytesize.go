// Package bytesize parses and prints sizes such as "512KiB" or "10MB" in config files.
package bytesize

import (
	"fmt"
	"strconv"
	"strings"
)

// Size is a number of bytes. In TOML it is written as an integer or a string with a unit:
// B, KB/KiB (1024), MB/MiB (1024²), GB/GiB (1024³). Mail admins think of "10MB" as the
// size Postfix's message_size_limit shows, so both spellings mean binary units.
type Size int64

var units = []struct {
	suffix string
	mult   int64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30},
	{"kb", 1 << 10}, {"mb", 1 << 20}, {"gb", 1 << 30},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"b", 1},
}

// Parse reads a size such as "25MiB", "512 KB" or "1048576".
func Parse(s string) (Size, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("invalid size %q: want a number with an optional unit (KiB, MiB, GiB)", s)
	}
	return Size(f * float64(mult)), nil
}

// UnmarshalTOML lets BurntSushi/toml decode an integer or a string.
func (z *Size) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case int64:
		if x < 0 {
			return fmt.Errorf("invalid size %d: negative", x)
		}
		*z = Size(x)
		return nil
	case string:
		n, err := Parse(x)
		*z = n
		return err
	}
	return fmt.Errorf("invalid size %v: want an integer or a string such as \"10MiB\"", v)
}

// String prints the size with the largest binary unit that divides it.
func (z Size) String() string {
	switch {
	case z != 0 && z%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", z>>30)
	case z != 0 && z%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", z>>20)
	case z != 0 && z%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", z>>10)
	}
	return fmt.Sprintf("%dB", int64(z))
}

// MarshalText prints the size for `fpsafe config check`.
func (z Size) MarshalText() ([]byte, error) { return []byte(z.String()), nil }

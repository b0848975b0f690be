package icap

import (
	"net/textproto"
	"strings"
)

// Default detection headers: what c-icap's virus_scan service sends, and what most
// commercial ICAP anti-virus servers send too (draft-stecher-icap-subid's
// X-Infection-Found and X-Violations-Found, and the older X-Virus-ID).
var (
	DefaultVirusHeaders     = []string{"X-Infection-Found", "X-Virus-ID"}
	DefaultViolationHeaders = []string{"X-Violations-Found"}
)

// maxNames bounds the threat names taken from one answer; maxName bounds each one.
const (
	maxNames = 16
	maxName  = 200
)

// detector reads threat names from an answer's headers.
type detector struct {
	virus     []string // canonical header names
	violation []string
}

func newDetector(virus, violation []string) detector {
	if virus == nil {
		virus = DefaultVirusHeaders
	}
	if violation == nil {
		violation = DefaultViolationHeaders
	}
	var d detector
	for _, h := range virus {
		d.virus = append(d.virus, textproto.CanonicalMIMEHeaderKey(h))
	}
	for _, h := range violation {
		d.violation = append(d.violation, textproto.CanonicalMIMEHeaderKey(h))
	}
	return d
}

// findings are the threats an answer names: viruses, and policy or container violations
// (X-Infection-Found Type=1 or 2: a blocked file type, an encrypted archive...), which are
// doubtful rather than malicious.
type findings struct {
	viruses, violations []string
}

func (f findings) any() bool { return len(f.viruses)+len(f.violations) > 0 }

// find collects the threat names from h.
func (d detector) find(h header) findings {
	var f findings
	for _, k := range d.virus {
		for _, v := range h[k] {
			name, policy := parseInfection(v)
			if policy {
				f.violations = addName(f.violations, name)
			} else {
				f.viruses = addName(f.viruses, name)
			}
		}
	}
	for _, k := range d.violation {
		for _, v := range h[k] {
			for _, name := range parseViolations(v) {
				f.viruses = addName(f.viruses, name)
			}
		}
	}
	return f
}

// parseInfection reads "Type=0; Resolution=2; Threat=Eicar-Test-Signature;" and returns the
// threat and whether Type says a policy (1) or container (2) violation rather than an
// infection (0). A value without "Threat=" (X-Virus-ID: Eicar-Test-Signature) is the name.
func parseInfection(v string) (name string, policy bool) {
	v = strings.ReplaceAll(v, "\n", " ")
	if !strings.Contains(strings.ToLower(v), "threat=") {
		return v, false
	}
	for _, p := range strings.Split(v, ";") {
		k, val, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "threat":
			name = val
		case "type":
			t := strings.TrimSpace(val)
			policy = t == "1" || t == "2"
		}
	}
	if strings.TrimSpace(name) == "" {
		name = v // a detection header with an empty threat still reports a detection
	}
	return name, policy
}

// parseViolations reads X-Violations-Found: a count, then per threat four lines (file
// name, threat description, problem ID, resolution ID), folded:
//
//	X-Violations-Found: 1
//		-
//		Eicar-Test-Signature
//		0
//		0
//
// A count of 0 or "-" names nothing; a value in another shape is taken whole, as a
// detection whose name could not be read is still a detection.
func parseViolations(v string) []string {
	lines := strings.Split(v, "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	first := strings.TrimSpace(lines[0])
	if first == "0" || first == "-" || first == "" && len(lines) == 1 {
		return nil
	}
	n := 0
	for _, c := range first {
		if c < '0' || c > '9' {
			n = -1
			break
		}
		n = n*10 + int(c-'0')
		if n > 1000 {
			break
		}
	}
	if n > 0 && len(lines) >= 1+4*min(n, maxNames) {
		var out []string
		for i := 0; i < min(n, maxNames); i++ {
			out = append(out, lines[1+4*i+1])
		}
		return out
	}
	return []string{strings.Join(lines, " ")}
}

// addName appends a cleaned name (printable, bounded) unless it is empty or already there.
func addName(names []string, name string) []string {
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, name)
	if len(name) > maxName {
		name = name[:maxName]
	}
	name = strings.TrimSpace(strings.ToValidUTF8(name, "?"))
	if name == "" || name == "-" || len(names) >= maxNames {
		return names
	}
	for _, n := range names {
		if n == name {
			return names
		}
	}
	return append(names, name)
}

package replay

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"sort"
	"strings"
)

// MaxHTMLRows bounds each table of the HTML report; the JSON output has every message.
const MaxHTMLRows = 2000

// WriteHTML writes the report as one self-contained HTML page: inline CSS and an inline SVG
// histogram of the combined scores with the thresholds drawn on it; no script, no external
// resource. Everything from the messages is escaped by html/template.
func (r *Report) WriteHTML(w io.Writer) error {
	return htmlPage.Execute(w, r.htmlData())
}

type htmlData struct {
	R        *Report
	Compare  bool
	Letters  []string
	Chart    chart
	Changed  []Change
	Flagged  []Entry
	Problems []Problem
	More     struct{ Changed, Flagged, Problems int }
	Actions  []string
	Verdicts []string
	Engines  []engineRow
}

type engineRow struct{ Name, Outcomes string }

func (r *Report) htmlData() htmlData {
	d := htmlData{R: r, Compare: len(r.Configs) > 1, Letters: []string{"A", "B"}[:len(r.Configs)],
		Actions:  []string{"deliver", "tag", "quarantine"},
		Verdicts: []string{"clean", "tagged", "quarantined", "unscanned", "allowlisted"}}
	d.Chart = r.chart()
	for _, name := range sortedKeys(r.Configs[0].Engines) {
		outs := r.Configs[0].Engines[name]
		var parts []string
		for _, o := range sortedKeys(outs) {
			parts = append(parts, fmt.Sprintf("%s %d", o, outs[o]))
		}
		d.Engines = append(d.Engines, engineRow{name, strings.Join(parts, ", ")})
	}
	d.Changed, d.More.Changed = capRows(r.Changed)
	d.Flagged, d.More.Flagged = capRows(r.Flagged)
	d.Problems, d.More.Problems = capRows(r.Problems)
	return d
}

func capRows[T any](s []T) ([]T, int) {
	if len(s) > MaxHTMLRows {
		return s[:MaxHTMLRows], len(s) - MaxHTMLRows
	}
	return s, 0
}

// chart is the histogram's geometry, computed here so that the template only places shapes.
type chart struct {
	W, H      int
	Rects     []rect
	Lines     []line
	Texts     []text
	Note      string
	Unscanned []string
}

type rect struct {
	X, Y, W, H float64
	Class      string
	Title      string
}

type line struct {
	X1, Y1, X2, Y2 float64
	Class          string
}

type text struct {
	X, Y   float64
	Anchor string
	Class  string
	Text   string
}

const (
	chartW, chartH          = 1120, 390
	padL, padR, padB        = 56, 24, 44
	plotW                   = chartW - padL - padR
	thresholdLabelRowHeight = 16
)

// chart draws the first config's histogram as bars stacked by action (sqrt scale, so that a
// handful of spam next to thousands of ham stays visible), the second config's as outlines
// when its scores differ, and each config's tag_score and quarantine_score as vertical lines:
// the first config's solid, the second's dashed.
func (r *Report) chart() chart {
	c := chart{W: chartW, H: chartH}
	hA := r.Configs[0].Histogram
	var hB *Histogram
	if len(r.Configs) > 1 && !sameBins(hA, r.Configs[1].Histogram) {
		hB = &r.Configs[1].Histogram
	}
	maxN := 1
	for i, b := range hA.Bins {
		maxN = max(maxN, b.Total())
		if hB != nil {
			maxN = max(maxN, hB.Bins[i].Total())
		}
	}
	x := func(score float64) float64 {
		s := min(max(score, hA.Min), hA.Max)
		return padL + (s-hA.Min)/(hA.Max-hA.Min)*plotW
	}
	// room above the plot for one row of threshold labels per line
	padT := 20 + 2*len(r.Configs)*thresholdLabelRowHeight
	plotH := chartH - padT - padB
	y := func(n float64) float64 { return float64(padT+plotH) - math.Sqrt(n/float64(maxN))*float64(plotH) }
	bottom := float64(padT + plotH)

	// axes and grid
	for _, t := range yTicks(maxN) {
		c.Lines = append(c.Lines, line{padL, y(float64(t)), padL + plotW, y(float64(t)), "grid"})
		c.Texts = append(c.Texts, text{padL - 6, y(float64(t)) + 4, "end", "tick", fmt.Sprint(t)})
	}
	for s := hA.Min; s <= hA.Max; s += hA.Width {
		major := math.Mod(s, 5) == 0
		l := 4.0
		if major {
			l = 8
			c.Texts = append(c.Texts, text{x(s), bottom + 22, "middle", "tick", fmt.Sprintf("%g", s)})
		}
		c.Lines = append(c.Lines, line{x(s), bottom, x(s), bottom + l, "axis"})
	}
	c.Lines = append(c.Lines, line{padL, bottom, padL + plotW, bottom, "axis"}, line{padL, float64(padT), padL, bottom, "axis"})
	c.Texts = append(c.Texts,
		text{padL + plotW/2, chartH - 6, "middle", "axis-label", "combined score (bins of 1.0; below -10 and above 20 counted at the ends)"},
		text{14, float64(padT + plotH/2), "middle", "axis-label vertical", "messages (√ scale)"})

	// bars
	bw := plotW / ((hA.Max - hA.Min) / hA.Width)
	for i, b := range hA.Bins {
		x0 := x(b.Lo) + 1
		base := 0
		for _, part := range []struct {
			n     int
			class string
		}{{b.Deliver, "deliver"}, {b.Tag, "tag"}, {b.Quarantine, "quarantine"}} {
			if part.n == 0 {
				continue
			}
			top, bot := y(float64(base+part.n)), y(float64(base))
			c.Rects = append(c.Rects, rect{x0, top, bw - 2, bot - top, "bar " + part.class,
				fmt.Sprintf("score [%g, %g): %d %s", b.Lo, b.Hi, part.n, part.class)})
			base += part.n
		}
		if b.Total() > 0 {
			c.Texts = append(c.Texts, text{x0 + (bw-2)/2, y(float64(b.Total())) - 4, "middle", "count", fmt.Sprint(b.Total())})
		}
		if hB != nil && hB.Bins[i].Total() > 0 {
			n := hB.Bins[i].Total()
			c.Rects = append(c.Rects, rect{x0 + 3, y(float64(n)), bw - 8, bottom - y(float64(n)), "outline-b",
				fmt.Sprintf("B: score [%g, %g): %d messages", b.Lo, b.Hi, n)})
		}
	}

	// thresholds: one row of labels per line, the leftmost line's label on top, so that no
	// line crosses another's label even when thresholds are close
	type threshold struct {
		label, class string
		x            float64
	}
	var ts []threshold
	for i, cs := range r.Configs {
		prefix := ""
		if len(r.Configs) > 1 {
			prefix = []string{"A ", "B "}[i]
		}
		style := []string{"a", "b"}[i]
		ts = append(ts,
			threshold{fmt.Sprintf("%stag_score %g", prefix, cs.TagScore), "tag " + style, x(cs.TagScore)},
			threshold{fmt.Sprintf("%squarantine_score %g", prefix, cs.QuarantineScore), "quarantine " + style, x(cs.QuarantineScore)})
	}
	sort.SliceStable(ts, func(i, j int) bool { return ts[i].x < ts[j].x })
	for row, t := range ts {
		ly := float64(padT - 8 - (len(ts)-1-row)*thresholdLabelRowHeight)
		c.Lines = append(c.Lines, line{t.x, ly + 4, t.x, bottom, "threshold " + t.class})
		anchor, dx := "start", 4.0
		if t.x > padL+plotW*0.8 {
			anchor, dx = "end", -4
		}
		c.Texts = append(c.Texts, text{t.x + dx, ly, anchor, "threshold-label " + t.class, t.label})
	}
	if hB == nil && len(r.Configs) > 1 {
		c.Note = "Both configs give every message the same combined score: one histogram, coloured by A's actions."
	} else if hB != nil {
		c.Note = "Bars: A's scores, coloured by A's actions; outlines: B's scores."
	}
	for i, cs := range r.Configs {
		if cs.Histogram.Unscanned > 0 {
			who := ""
			if len(r.Configs) > 1 {
				who = []string{"A", "B"}[i] + ": "
			}
			c.Unscanned = append(c.Unscanned, fmt.Sprintf("%s%d unscanned messages have no score and are not drawn.", who, cs.Histogram.Unscanned))
		}
	}
	return c
}

func sameBins(a, b Histogram) bool {
	for i := range a.Bins {
		if a.Bins[i].Total() != b.Bins[i].Total() {
			return false
		}
	}
	return true
}

// yTicks returns up to four round counts spread over [0, max] on a sqrt scale.
func yTicks(maxN int) []int {
	ticks := []int{0}
	for _, f := range []float64{1.0 / 16, 1.0 / 4, 9.0 / 16, 1} {
		t := roundNice(f * float64(maxN))
		if t > ticks[len(ticks)-1] && t <= maxN {
			ticks = append(ticks, t)
		}
	}
	return ticks
}

func roundNice(v float64) int {
	if v < 1 {
		return 0
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p*1.2 {
			return int(m * p)
		}
	}
	return int(10 * p)
}

var htmlFuncs = template.FuncMap{
	"f1":    func(v float64) string { return fmt.Sprintf("%.1f", v) },
	"num":   func(v float64) string { return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".") },
	"join":  strings.Join,
	"plus1": func(i int) int { return i + 1 },
}

var htmlPage = template.Must(template.New("report").Funcs(htmlFuncs).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fpsafe replay: {{.R.Path}}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", "DejaVu Sans", "Liberation Sans", sans-serif; margin: 18px 24px; color: #1d232a; background: #fff; font-size: 14px; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 22px 0 8px; }
.meta { color: #555; margin: 0 0 12px; }
.top { display: flex; gap: 28px; flex-wrap: wrap; align-items: flex-start; }
table.configs { margin-bottom: 12px; } table.configs td { border: 0; padding: 1px 14px 1px 0; }
table { border-collapse: collapse; }
th, td { padding: 3px 8px; border-bottom: 1px solid #e3e6ea; text-align: left; vertical-align: top; }
th { background: #f3f5f7; font-weight: 600; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.sub td:first-child { padding-left: 22px; color: #555; }
.list td { font-size: 13px; }
.list td.src, .list td.mid { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; word-break: break-all; max-width: 260px; }
.reasons { color: #444; font-size: 12px; margin: 0; padding-left: 16px; }
.pill { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 12px; font-weight: 600; color: #fff; }
.pill.deliver { background: #2e7d32; } .pill.tag { background: #c77800; } .pill.quarantine { background: #c62828; }
.chart { margin-top: 6px; } .chart svg { max-width: 100%; height: auto; }
td.act { white-space: nowrap; }
.bar.deliver { fill: #66bb6a; } .bar.tag { fill: #ffa726; } .bar.quarantine { fill: #e53935; }
.outline-b { fill: none; stroke: #1a237e; stroke-width: 2; stroke-dasharray: 5 3; }
.grid { stroke: #eceff1; } .axis { stroke: #607d8b; }
.tick { font-size: 11px; fill: #455a64; } .count { font-size: 10px; fill: #263238; }
.axis-label { font-size: 12px; fill: #37474f; } .vertical { transform: rotate(-90deg); transform-box: fill-box; transform-origin: center; }
.threshold { stroke-width: 2; } .threshold.tag { stroke: #ef6c00; } .threshold.quarantine { stroke: #b71c1c; }
.threshold.b { stroke-dasharray: 7 4; stroke-width: 2.5; } .threshold.b.tag { stroke: #6a1b9a; } .threshold.b.quarantine { stroke: #0d47a1; }
.threshold-label { font-size: 12px; font-weight: 600; } .threshold-label.tag { fill: #e65100; } .threshold-label.quarantine { fill: #b71c1c; }
.threshold-label.b.tag { fill: #6a1b9a; } .threshold-label.b.quarantine { fill: #0d47a1; }
.legend { display: flex; gap: 16px; flex-wrap: wrap; font-size: 12px; color: #37474f; margin: 4px 0 0 56px; }
.sw { display: inline-block; width: 12px; height: 12px; vertical-align: -2px; margin-right: 4px; }
.sw.deliver { background: #66bb6a; } .sw.tag { background: #ffa726; } .sw.quarantine { background: #e53935; }
.sw.outline { border: 2px dashed #1a237e; width: 9px; height: 9px; }
.ln { display: inline-block; width: 22px; height: 0; vertical-align: 3px; margin-right: 4px; border-top: 2px solid #ef6c00; }
.ln.b { border-top: 3px dashed #6a1b9a; }
.note { color: #555; font-size: 12px; margin: 2px 0 0 56px; }
.more { color: #555; font-style: italic; }
details summary { cursor: pointer; font-size: 16px; font-weight: 600; margin: 22px 0 8px; }
</style>
</head>
<body>
<h1>fpsafe replay: {{.R.Path}}</h1>
<p class="meta">{{.R.Kind}} · {{.R.Messages}} messages · {{if .R.NoEngines}}--no-engines: verdicts from the messages' X-FPSafe-Report / X-Spam-* fields{{else}}engines asked live{{end}} · {{num .R.ElapsedSeconds}} s · {{printf "%.0f" .R.MessagesPerSecond}} msg/s{{if .R.ParseErrors}} · {{.R.ParseErrors}} malformed (decided){{end}}{{if .R.Unreadable}} · {{.R.Unreadable}} unreadable{{end}}</p>

<table class="configs">
{{range $i, $c := .R.Configs}}<tr><td><b>{{if $.Compare}}{{index $.Letters $i}}{{else}}config{{end}}</b></td><td>{{$c.Name}}</td><td>tag_score <b>{{num $c.TagScore}}</b></td><td>quarantine_score <b>{{num $c.QuarantineScore}}</b></td><td>quarantine_min_engines <b>{{$c.QuarantineMinEngines}}</b></td><td>mode {{$c.Mode}}</td></tr>
{{end}}</table>

<div class="top">
<table>
<tr><th></th>{{range .Letters}}<th class="n">{{.}}</th>{{end}}</tr>
{{range $a := .Actions}}<tr><td><span class="pill {{$a}}">{{$a}}</span></td>{{range $.R.Configs}}<td class="n">{{index .Actions $a}}</td>{{end}}</tr>
{{end}}{{range $v := .Verdicts}}<tr class="sub"><td>{{$v}}</td>{{range $.R.Configs}}<td class="n">{{index .Verdicts $v}}</td>{{end}}</tr>
{{end}}</table>
{{if .Compare}}
<table>
<tr><th>changed</th><th class="n">{{len .R.Changed}}</th></tr>
{{range .R.ChangeCounts}}<tr><td><span class="pill {{.From}}">{{.From}}</span> → <span class="pill {{.To}}">{{.To}}</span></td><td class="n">{{.Count}}</td></tr>
{{end}}</table>
{{end}}
{{if .Engines}}
<table>
<tr><th>engine{{if .Compare}} (A){{end}}</th><th>outcomes</th></tr>
{{range .Engines}}<tr><td>{{.Name}}</td><td>{{.Outcomes}}</td></tr>
{{end}}{{with .R.Recorded}}<tr class="sub"><td colspan="2">verdicts from X-FPSafe-Report {{index . "x-fpsafe-report"}}, X-Spam-* {{index . "x-spam"}}, none {{index . "none"}}</td></tr>{{end}}
</table>
{{end}}
</div>

<h2>Combined scores</h2>
<div class="chart">
<svg xmlns="http://www.w3.org/2000/svg" width="{{.Chart.W}}" height="{{.Chart.H}}" viewBox="0 0 {{.Chart.W}} {{.Chart.H}}" role="img" aria-label="histogram of combined scores with the thresholds">
{{range .Chart.Lines}}<line x1="{{f1 .X1}}" y1="{{f1 .Y1}}" x2="{{f1 .X2}}" y2="{{f1 .Y2}}" class="{{.Class}}"/>
{{end}}{{range .Chart.Rects}}<rect x="{{f1 .X}}" y="{{f1 .Y}}" width="{{f1 .W}}" height="{{f1 .H}}" class="{{.Class}}"><title>{{.Title}}</title></rect>
{{end}}{{range .Chart.Texts}}<text x="{{f1 .X}}" y="{{f1 .Y}}" text-anchor="{{.Anchor}}" class="{{.Class}}">{{.Text}}</text>
{{end}}</svg>
<div class="legend"><span><span class="sw deliver"></span>deliver</span><span><span class="sw tag"></span>tag</span><span><span class="sw quarantine"></span>quarantine</span>{{if .Compare}}<span><span class="ln"></span>A thresholds (solid)</span><span><span class="ln b"></span>B thresholds (dashed)</span>{{end}}</div>
{{with .Chart.Note}}<p class="note">{{.}}</p>{{end}}{{range .Chart.Unscanned}}<p class="note">{{.}}</p>{{end}}
</div>

{{if .Compare}}
<h2>Messages whose action changes from A to B ({{len .R.Changed}})</h2>
{{if .Changed}}<table class="list">
<tr><th class="n">#</th><th>source</th><th>Message-ID</th><th>subject</th><th>from</th><th>A</th><th>B</th><th>why (B)</th></tr>
{{range .Changed}}<tr><td class="n">{{.Index}}</td><td class="src">{{.Source}}</td><td class="mid">{{.MessageID}}</td><td>{{.Subject}}</td><td>{{.Sender}}</td><td class="act"><span class="pill {{.From.Action}}">{{.From.Action}}</span> {{f1 .From.Score}}</td><td class="act"><span class="pill {{.To.Action}}">{{.To.Action}}</span> {{f1 .To.Score}}</td><td><ul class="reasons">{{range .To.Reasons}}<li>{{.}}</li>{{end}}</ul></td></tr>
{{end}}</table>{{if .More.Changed}}<p class="more">… and {{.More.Changed}} more (fpsafe replay --format json lists them all)</p>{{end}}{{else}}<p>No message changes action.</p>{{end}}
<details>
<summary>Tagged or quarantined under A ({{len .R.Flagged}})</summary>
{{template "flagged" .}}
</details>
{{else}}
<h2>Tagged or quarantined ({{len .R.Flagged}})</h2>
{{template "flagged" .}}
{{end}}

{{if .Problems}}
<h2>Malformed or unreadable ({{len .R.Problems}})</h2>
<table class="list">
<tr><th class="n">#</th><th>source</th><th>problem</th><th></th></tr>
{{range .Problems}}<tr><td class="n">{{.Index}}</td><td class="src">{{.Source}}</td><td>{{.Problem}}</td><td>{{if .Decided}}decided all the same{{else}}not decided{{end}}</td></tr>
{{end}}</table>{{if .More.Problems}}<p class="more">… and {{.More.Problems}} more</p>{{end}}
{{end}}
</body>
</html>
{{define "flagged"}}{{if .Flagged}}<table class="list">
<tr><th class="n">#</th><th>source</th><th>Message-ID</th><th>subject</th><th>from</th><th>action</th><th class="n">score</th><th>why</th></tr>
{{range .Flagged}}<tr><td class="n">{{.Index}}</td><td class="src">{{.Source}}</td><td class="mid">{{.MessageID}}</td><td>{{.Subject}}</td><td>{{.Sender}}</td><td><span class="pill {{.Action}}">{{.Action}}</span></td><td class="n">{{f1 .Score}}</td><td><ul class="reasons">{{range .Reasons}}<li>{{.}}</li>{{end}}</ul></td></tr>
{{end}}</table>{{if .More.Flagged}}<p class="more">… and {{.More.Flagged}} more (fpsafe replay --format json lists them all)</p>{{end}}{{else}}<p>None.</p>{{end}}{{end}}
`))

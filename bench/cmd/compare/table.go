// The tables of the rows other than the Go load generator's GETs: each
// target's named numbers per repetition, the medians and their ratios to
// a reference target, in Markdown and as chart panels.

package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
)

// metric is one column of a table.
type metric struct {
	key, head string
	format    string // of the median, e.g. "%.0f"
	// chart, when not empty, is the title of the chart panel this metric
	// gets.
	chart   string
	noRatio bool // a count or share: no ratio column
}

// table is one row family's result: per target, one map of metric values
// per repetition.
type table struct {
	title, method string
	ref           string // the target the ratios are to
	metrics       []metric
	targets       []string
	reps          map[string][]map[string]float64
	notes         []string // lines under the table
}

// measureTable measures every target of t reps times, interleaved in a
// rotated order, with one. A failed measurement is noted under the table
// and returned, after the others are done.
func measureTable(c config, ts map[string]*target, t *table, one func(name string) (map[string]float64, error)) error {
	t.reps = map[string][]map[string]float64{}
	var errs []error
	for rep := 0; rep < c.reps; rep++ {
		order := slices.Clone(t.targets)
		k := rep % len(order)
		order = append(order[k:], order[:k]...)
		for _, name := range order {
			fmt.Fprintf(os.Stderr, "compare: rep %d/%d %s: %s\n", rep+1, c.reps, t.title, name)
			v, err := one(name)
			if err != nil {
				// One failure leaves the other targets' numbers standing.
				err = fmt.Errorf("%s, %s, repetition %d: %w", t.title, name, rep+1, err)
				fmt.Fprintf(os.Stderr, "compare: %v\n", err)
				if tg := ts[name]; tg != nil {
					fmt.Fprintf(os.Stderr, "compare: the end of %s's output:\n%s", name, tg.logTail())
				}
				t.notes = append(t.notes, fmt.Sprintf("Failed: %v", err))
				errs = append(errs, err)
				continue
			}
			t.reps[name] = append(t.reps[name], v)
		}
	}
	return errors.Join(errs...)
}

// median returns the median of key over target's repetitions, and whether
// it was measured.
func (t *table) median(target, key string) (float64, bool) {
	var xs []float64
	for _, r := range t.reps[target] {
		if v, ok := r[key]; ok {
			xs = append(xs, v)
		}
	}
	return median(xs), len(xs) > 0
}

func (t *table) markdown(b *strings.Builder) {
	fmt.Fprintf(b, "\n## %s\n\n%s\n\n| target |", t.title, t.method)
	align := "|---|"
	for _, m := range t.metrics {
		fmt.Fprintf(b, " %s |", m.head)
		align += "---:|"
		if !m.noRatio {
			fmt.Fprintf(b, " × %s |", t.ref)
			align += "---:|"
		}
	}
	fmt.Fprintf(b, "\n%s\n", align)
	for _, name := range t.targets {
		fmt.Fprintf(b, "| %s |", name)
		for _, m := range t.metrics {
			v, ok := t.median(name, m.key)
			switch {
			case !ok:
				b.WriteString(" – |")
			case m.key == "errors": // all of them, not a median
				var sum float64
				for _, r := range t.reps[name] {
					sum += r[m.key]
				}
				fmt.Fprintf(b, " %.0f |", sum)
			default:
				fmt.Fprintf(b, " "+m.format+" |", v)
			}
			if !m.noRatio {
				ref, _ := t.median(t.ref, m.key)
				fmt.Fprintf(b, " %s |", ratio(v, ref))
			}
		}
		b.WriteString("\n")
	}
	for _, n := range t.notes {
		fmt.Fprintf(b, "\n%s\n", n)
	}
}

// repetitions lists every repetition's numbers, in measurement order.
func (t *table) repetitions(b *strings.Builder) {
	keys := make([]string, len(t.metrics))
	for i, m := range t.metrics {
		keys[i] = m.key
	}
	fmt.Fprintf(b, "\n%s (%s):\n\n", t.title, strings.Join(keys, " / "))
	for _, name := range t.targets {
		fmt.Fprintf(b, "- %s:", name)
		for _, r := range t.reps[name] {
			var vs []string
			for _, k := range keys {
				if v, ok := r[k]; ok && v >= 100 {
					vs = append(vs, fmt.Sprintf("%.0f", v))
				} else if ok {
					vs = append(vs, fmt.Sprintf("%.1f", v))
				} else {
					vs = append(vs, "–")
				}
			}
			fmt.Fprintf(b, " %s;", strings.Join(vs, "/"))
		}
		b.WriteString("\n")
	}
}

// panels returns the table's chart panels.
func (t *table) panels() []panel {
	var out []panel
	for _, m := range t.metrics {
		if m.chart == "" {
			continue
		}
		p := panel{title: m.chart, format: m.format}
		for _, name := range t.targets {
			if v, ok := t.median(name, m.key); ok {
				p.bars = append(p.bars, bar{name, v})
			}
		}
		out = append(out, p)
	}
	return out
}

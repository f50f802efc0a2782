package metrics

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Set holds metric families. It is safe for concurrent use: the monitor
// updates while the HTTP handler writes.
type Set struct {
	mu       sync.Mutex
	families []*Family
}

// Family is one metric: a name, its help and type, and a series per
// combination of label values.
type Family struct {
	set     *Set
	name    string
	help    string
	kind    string // counter, gauge or histogram
	labels  []string
	buckets []float64 // histograms' upper bounds, ascending, +Inf implied
	series  map[string]*Series
}

// Series is one labelled time series of a family.
type Series struct {
	family *Family
	values []string
	value  float64
	// counts are the histogram's observations per bucket (not cumulative;
	// the last one is above every bound).
	counts []uint64
	sum    float64
}

func (s *Set) add(name, help, kind string, buckets []float64, labels []string) *Family {
	if !validName(name) {
		panic(fmt.Sprintf("metrics: %q is not a metric name", name))
	}
	for _, l := range labels {
		if !validName(l) || strings.HasPrefix(l, "__") || l == "le" && kind == "histogram" {
			panic(fmt.Sprintf("metrics: %q is not a label name of %s", l, name))
		}
	}
	if !slices.IsSorted(buckets) {
		panic(fmt.Sprintf("metrics: the buckets of %s are not ascending", name))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.families {
		if f.name == name {
			panic(fmt.Sprintf("metrics: %s is defined twice", name))
		}
	}
	f := &Family{set: s, name: name, help: help, kind: kind, labels: labels, buckets: buckets, series: map[string]*Series{}}
	s.families = append(s.families, f)
	return f
}

// Counter defines a counter: a number that only goes up, reset when the
// process starts.
func (s *Set) Counter(name, help string, labels ...string) *Family {
	return s.add(name, help, "counter", nil, labels)
}

// Gauge defines a gauge: a number that goes up and down.
func (s *Set) Gauge(name, help string, labels ...string) *Family {
	return s.add(name, help, "gauge", nil, labels)
}

// Histogram defines a histogram with the given upper bounds (ascending;
// +Inf is added).
func (s *Set) Histogram(name, help string, buckets []float64, labels ...string) *Family {
	return s.add(name, help, "histogram", slices.Clone(buckets), labels)
}

// Names lists the names of the families defined, in the order defined.
func (s *Set) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, f := range s.families {
		out = append(out, f.name)
	}
	return out
}

// With returns the series with these label values (one per label, in
// the family's order), creating it at zero if it does not exist yet.
func (f *Family) With(values ...string) *Series {
	if len(values) != len(f.labels) {
		panic(fmt.Sprintf("metrics: %s has labels %v, given values %q", f.name, f.labels, values))
	}
	key := strings.Join(values, "\x00")
	f.set.mu.Lock()
	defer f.set.mu.Unlock()
	if s := f.series[key]; s != nil {
		return s
	}
	s := &Series{family: f, values: slices.Clone(values)}
	if f.kind == "histogram" {
		s.counts = make([]uint64, len(f.buckets)+1)
	}
	f.series[key] = s
	return s
}

// Delete removes every series whose labels have all the given values
// (labels the family does not have match nothing). A Series kept by the
// caller can still be updated and is not shown.
func (f *Family) Delete(match map[string]string) {
	idx := map[int]string{}
	for label, value := range match {
		i := slices.Index(f.labels, label)
		if i < 0 {
			return
		}
		idx[i] = value
	}
	f.set.mu.Lock()
	defer f.set.mu.Unlock()
	for k, s := range f.series {
		all := true
		for i, v := range idx {
			all = all && s.values[i] == v
		}
		if all {
			delete(f.series, k)
		}
	}
}

// Values lists the values a label has in the family's series, sorted.
func (f *Family) Values(label string) []string {
	i := slices.Index(f.labels, label)
	if i < 0 {
		return nil
	}
	f.set.mu.Lock()
	defer f.set.mu.Unlock()
	var out []string
	for _, s := range f.series {
		out = append(out, s.values[i])
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Inc adds one to a counter.
func (s *Series) Inc() { s.Add(1) }

// Add adds v, which must not be negative, to a counter.
func (s *Series) Add(v float64) {
	if v < 0 || s.family.kind != "counter" {
		panic(fmt.Sprintf("metrics: adding %v to %s %s", v, s.family.kind, s.family.name))
	}
	s.family.set.mu.Lock()
	s.value += v
	s.family.set.mu.Unlock()
}

// Set sets a gauge.
func (s *Series) Set(v float64) {
	if s.family.kind != "gauge" {
		panic(fmt.Sprintf("metrics: setting %s %s", s.family.kind, s.family.name))
	}
	s.family.set.mu.Lock()
	s.value = v
	s.family.set.mu.Unlock()
}

// Observe adds one observation to a histogram.
func (s *Series) Observe(v float64) {
	f := s.family
	if f.kind != "histogram" {
		panic(fmt.Sprintf("metrics: observing %s %s", f.kind, f.name))
	}
	// The first bucket whose bound is not below v; len(buckets) is +Inf.
	i, _ := slices.BinarySearch(f.buckets, v)
	f.set.mu.Lock()
	s.counts[i]++
	s.sum += v
	f.set.mu.Unlock()
}

// Write writes every family in the text format, families by name and
// series by label values, so the output is stable.
func (s *Set) Write(w io.Writer) error {
	bw := bufio.NewWriter(w)
	s.mu.Lock()
	families := slices.Clone(s.families)
	slices.SortFunc(families, func(a, b *Family) int { return strings.Compare(a.name, b.name) })
	for _, f := range families {
		f.write(bw)
	}
	s.mu.Unlock()
	return bw.Flush()
}

func (f *Family) write(w *bufio.Writer) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", f.name, helpEscaper.Replace(f.help), f.name, f.kind)
	series := make([]*Series, 0, len(f.series))
	for _, s := range f.series {
		series = append(series, s)
	}
	slices.SortFunc(series, func(a, b *Series) int { return slices.Compare(a.values, b.values) })
	for _, s := range series {
		if f.kind != "histogram" {
			writeSample(w, f.name, f.labels, s.values, "", "", s.value)
			continue
		}
		var cumulative uint64
		for i, n := range s.counts {
			cumulative += n
			bound := math.Inf(1)
			if i < len(f.buckets) {
				bound = f.buckets[i]
			}
			writeSample(w, f.name+"_bucket", f.labels, s.values, "le", formatFloat(bound), float64(cumulative))
		}
		writeSample(w, f.name+"_sum", f.labels, s.values, "", "", s.sum)
		writeSample(w, f.name+"_count", f.labels, s.values, "", "", float64(cumulative))
	}
}

// writeSample writes one line: name{label="value",...} value, with an
// extra label (a histogram's le) when extra is set.
func writeSample(w *bufio.Writer, name string, labels, values []string, extra, extraValue string, v float64) {
	w.WriteString(name)
	if len(labels) > 0 || extra != "" {
		w.WriteByte('{')
		for i, l := range labels {
			if i > 0 {
				w.WriteByte(',')
			}
			w.WriteString(l)
			w.WriteString(`="`)
			w.WriteString(labelEscaper.Replace(values[i]))
			w.WriteByte('"')
		}
		if extra != "" {
			if len(labels) > 0 {
				w.WriteByte(',')
			}
			w.WriteString(extra)
			w.WriteString(`="`)
			w.WriteString(extraValue)
			w.WriteByte('"')
		}
		w.WriteByte('}')
	}
	w.WriteByte(' ')
	w.WriteString(formatFloat(v))
	w.WriteByte('\n')
}

var (
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
)

func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// validName is Prometheus' rule for metric and label names (without the
// colons reserved for recording rules).
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// ContentType is the text format's media type.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// WriteFile writes the set to path through path.tmp and a rename, so a
// reader (node_exporter's textfile collector) never sees half a file; the
// collector reads only names ending in .prom, so it skips the temporary.
func (s *Set) WriteFile(path string) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("writing metrics to %s: %w", path, err)
	}
	err = s.Write(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing metrics to %s: %w", path, err)
	}
	return nil
}

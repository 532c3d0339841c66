package promexporter

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// Why a text writer beside Collect: with 100 spools of 10 queues a scrape
// has about 21,500 samples, and client_golang's Gather (a Metric value, a
// channel send, a consistency check and a sort per series) plus its text
// encoder take 15-30 ms on a small VM. WriteText walks the same series
// (visit is shared, so both always agree; a test compares them) straight
// into per-family buffers, several times faster.

// textSink accumulates the text exposition of each family.
type textSink struct {
	bufs    [][]byte // per family, by family.index
	scratch []byte   // a histogram's label pairs, written once for its 14 lines
	le      []string // the histogram's le values, Exporter.ageLeText
}

// Precomputed names of the histogram's series.
var (
	ageBucketName = famQueueAge.name + "_bucket"
	ageSumName    = famQueueAge.name + "_sum"
	ageCountName  = famQueueAge.name + "_count"
)

// appendLabelValue appends v escaped for a text-format label value.
func appendLabelValue(b []byte, v string) []byte {
	plain := true
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '\\' || c == '"' || c == '\n' {
			plain = false
			break
		}
	}
	if plain {
		return append(b, v...)
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\':
			b = append(b, `\\`...)
		case '"':
			b = append(b, `\"`...)
		case '\n':
			b = append(b, `\n`...)
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendLabelPairs appends l1="v1",l2="v2" with the labels of f sorted by
// name, as client_golang writes them.
func appendLabelPairs(b []byte, f *family, values *lv) []byte {
	for n, i := range f.order {
		if n > 0 {
			b = append(b, ',')
		}
		b = append(b, f.labels[i]...)
		b = append(b, '=', '"')
		b = appendLabelValue(b, values[i])
		b = append(b, '"')
	}
	return b
}

// appendSeries appends name{l1="v1",...} and a space.
func appendSeries(b []byte, name string, f *family, values *lv) []byte {
	b = append(b, name...)
	if len(f.labels) > 0 {
		b = append(b, '{')
		b = appendLabelPairs(b, f, values)
		b = append(b, '}')
	}
	return append(b, ' ')
}

func (t *textSink) sample(f *family, v float64, lvs lv) {
	b := appendSeries(t.bufs[f.index], f.name, f, &lvs)
	b = strconv.AppendFloat(b, v, 'g', -1, 64)
	t.bufs[f.index] = append(b, '\n')
}

func (t *textSink) histogram(f *family, cum []uint64, sum float64, lvs lv) {
	pairs := appendLabelPairs(t.scratch[:0], f, &lvs)
	t.scratch = pairs
	b := t.bufs[f.index]
	for i, le := range t.le {
		b = append(b, ageBucketName...)
		b = append(b, '{')
		b = append(b, pairs...)
		b = append(b, `,le="`...)
		b = append(b, le...)
		b = append(b, '"', '}', ' ')
		b = strconv.AppendUint(b, cum[i], 10)
		b = append(b, '\n')
	}
	b = append(b, ageSumName...)
	b = append(b, '{')
	b = append(b, pairs...)
	b = append(b, '}', ' ')
	b = strconv.AppendFloat(b, sum, 'g', -1, 64)
	b = append(b, '\n')
	b = append(b, ageCountName...)
	b = append(b, '{')
	b = append(b, pairs...)
	b = append(b, '}', ' ')
	b = strconv.AppendUint(b, cum[len(cum)-1], 10)
	t.bufs[f.index] = append(b, '\n')
}

var helpEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`)

func typeName(f *family) string {
	switch {
	case f == famQueueAge:
		return "histogram"
	case f.typ == prometheus.CounterValue:
		return "counter"
	}
	return "gauge"
}

// WriteText writes the series that Collect would produce, in the
// Prometheus text format 0.0.4, straight from the snapshots.
func (e *Exporter) WriteText(w io.Writer) error {
	// Reuse the last scrape's buffers (a sync.Pool would lose them to the
	// garbage collector between scrapes 15s apart); a concurrent scrape
	// makes its own.
	t := e.spare.Swap(nil)
	if t == nil {
		t = &textSink{bufs: make([][]byte, len(families)), le: e.ageLeText}
	}
	defer e.spare.Store(t)
	for i := range t.bufs {
		t.bufs[i] = t.bufs[i][:0]
	}
	e.visit(t)
	var head []byte
	for _, f := range families {
		if len(t.bufs[f.index]) == 0 {
			continue
		}
		head = append(head[:0], "# HELP "...)
		head = append(head, f.name...)
		head = append(head, ' ')
		head = append(head, helpEscaper.Replace(f.help)...)
		head = append(head, "\n# TYPE "...)
		head = append(head, f.name...)
		head = append(head, ' ')
		head = append(head, typeName(f)...)
		head = append(head, '\n')
		if _, err := w.Write(head); err != nil {
			return err
		}
		if _, err := w.Write(t.bufs[f.index]); err != nil {
			return err
		}
	}
	return nil
}

// NewHandler returns the /metrics handler. For clients that accept the
// text format (Prometheus does unless it wants native histograms, curl
// does) it writes the exporter's series with WriteText, then the families
// of others (the process and Go collectors, say), gzip-compressed when the
// client asks for it and opts.DisableCompression is false. Clients that ask
// for protobuf get everything through promhttp. others must not include e
// (its families would appear twice); a nil others adds nothing.
func NewHandler(e *Exporter, others prometheus.Gatherer, opts promhttp.HandlerOpts) http.Handler {
	own := prometheus.NewRegistry()
	own.MustRegister(e)
	gatherers := prometheus.Gatherers{own}
	if others != nil {
		gatherers = append(gatherers, others)
	}
	slow := promhttp.HandlerFor(gatherers, opts)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if expfmt.NegotiateAccept(r.Header, expfmt.FmtProtoDelim, expfmt.FmtText).FormatType() != expfmt.TypeTextPlain {
			slow.ServeHTTP(w, r)
			return
		}
		var mfs []*dto.MetricFamily
		if others != nil {
			var err error
			mfs, err = others.Gather()
			if err != nil && opts.ErrorLog != nil {
				opts.ErrorLog.Println("gathering the other collectors:", err)
			}
		}
		h := w.Header()
		h.Set("Content-Type", string(expfmt.FmtText))
		h.Add("Vary", "Accept-Encoding")
		var out io.Writer = w
		if !opts.DisableCompression && acceptsGzip(r) {
			h.Set("Content-Encoding", "gzip")
			zw := gzipPool.Get().(*gzip.Writer)
			zw.Reset(w)
			defer func() {
				_ = zw.Close()
				gzipPool.Put(zw)
			}()
			out = zw
		}
		if err := e.WriteText(out); err != nil {
			return // the client went away
		}
		for _, mf := range mfs {
			if _, err := expfmt.MetricFamilyToText(out, mf); err != nil {
				return
			}
		}
	})
}

// gzipPool holds klauspost/compress gzip writers at BestSpeed: for the
// 1.6 MB exposition of 100 spools of 10 queues they compress as well as
// compress/gzip's (76.5 kB against 76.7 kB) and bring the gzipped scrape's
// p99 from 4.4 ms to 3.4 ms (BenchmarkScrape). The module is the one
// Prometheus itself and client_golang's tests use.
var gzipPool = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return zw
}}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.TrimSpace(enc) == "gzip" && strings.ReplaceAll(strings.TrimSpace(params), " ", "") != "q=0" {
			return true
		}
	}
	return false
}

// Load-benchmark backends (P3, soak): Jaeger, Loki and Prometheus answers after a fixed latency.
//
// Same behaviour as bench/fake_backends.py, which writes the answer templates this server reads;
// Go because at 800 correlations/s the Python fakes ate a quarter of one of the machine's two
// cores, CPU the correlator under test should have.
//
//	go build -o BIN bench/backends.go && BIN PORT LATENCY_MS TEMPLATE_DIR [FAULT_RATE]
package main

import (
	"bytes"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const placeholder = "4bf92f3577b34da6a3ce929d0e0e4736"

// A trace ID in a LogQL query: 32 hex digits, or the zero-stripped spelling the correlator's line filter uses
// for an ID with leading zeros (TraceId.needle; never shorter than 16), padded back to 32 as Loki's lines carry it.
var hexID = regexp.MustCompile(`[0-9a-f]{16,32}`)

// bigPrefix: trace IDs starting with it get trace_big.json when the template dir has one (bench P8).
const bigPrefix = "b16b16"

// Queries in flight per backend, and the most there ever were since the last reset (bench flood:
// the correlator's bulkhead must keep these under its caps). GET /stats, GET /stats?reset=1.
type gauge struct{ now, peak, total atomic.Int64 }

func (g *gauge) enter() {
	n := g.now.Add(1)
	g.total.Add(1)
	for {
		p := g.peak.Load()
		if n <= p || g.peak.CompareAndSwap(p, n) {
			return
		}
	}
}

func (g *gauge) leave() { g.now.Add(-1) }

func must[T any](v T, err error) T {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	return v
}

func main() {
	port, latencyMs, dir := os.Args[1], must(strconv.ParseFloat(os.Args[2], 64)), os.Args[3]
	faultRate := 0.0
	if len(os.Args) > 4 {
		faultRate = must(strconv.ParseFloat(os.Args[4], 64))
	}
	latency := time.Duration(latencyMs * float64(time.Millisecond))
	load := func(name string) []byte { return must(os.ReadFile(filepath.Join(dir, name))) }
	trace, logs, exemplars := load("trace.json"), load("logs.json"), load("exemplars.json")
	bigTrace, _ := os.ReadFile(filepath.Join(dir, "trace_big.json"))
	gauges := map[string]*gauge{"jaeger": {}, "loki": {}, "prometheus": {}}

	// Prometheus can't filter by trace: answer for the ID Jaeger was last asked (as the Python fake).
	var mu sync.Mutex
	last := placeholder

	answer := func(w http.ResponseWriter, template []byte, traceID string, kind string) {
		gauges[kind].enter()
		defer gauges[kind].leave()
		time.Sleep(latency)
		if faultRate > 0 && rand.Float64() < faultRate {
			switch rand.Intn(4) {
			case 0:
				time.Sleep(5 * time.Second) // hang
				return
			case 1:
				w.Header().Set("Content-Type", "application/json")
				w.Write([]byte(`{"status": "succ`))
				return
			case 2:
				w.Header().Set("Retry-After", "1")
				http.Error(w, "429", http.StatusTooManyRequests)
				return
			default:
				http.Error(w, "500", http.StatusInternalServerError)
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(bytes.ReplaceAll(template, []byte(placeholder), []byte(traceID)))
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/api/v3/traces/", func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimPrefix(r.URL.Path, "/api/v3/traces/")
		mu.Lock()
		last = id
		mu.Unlock()
		if bigTrace != nil && strings.HasPrefix(id, bigPrefix) {
			answer(w, bigTrace, id, "jaeger")
			return
		}
		answer(w, trace, id, "jaeger")
	})
	// The untraced lookup's search for other traces of a service (GET /api/v3/traces?query.service_name=…):
	// none here, answered as Jaeger v2 answers an empty search (without this route ServeMux would redirect).
	mux.HandleFunc("/api/v3/traces", func(w http.ResponseWriter, r *http.Request) {
		gauges["jaeger"].enter()
		defer gauges["jaeger"].leave()
		time.Sleep(latency)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"error":{"httpCode":404,"message":"No traces found"}}`))
	})
	mux.HandleFunc("/loki/api/v1/query_range", func(w http.ResponseWriter, r *http.Request) {
		id := hexID.FindString(r.URL.Query().Get("query"))
		if id == "" {
			id = placeholder
		} else {
			id = strings.Repeat("0", 32-len(id)) + id
		}
		answer(w, logs, id, "loki")
	})
	mux.HandleFunc("/api/v1/query_exemplars", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		id := last
		mu.Unlock()
		answer(w, exemplars, id, "prometheus")
	})
	// The standing lookup's instant query (a latency histogram's buckets): answered as a real Prometheus
	// would, so a correlation asks what it asks in production and gets a real-shaped answer.
	buckets := []byte(`{"status":"success","data":{"resultType":"vector","result":[` +
		`{"metric":{"le":"0.1"},"value":[1795572505.2,"80"]},{"metric":{"le":"0.25"},"value":[1795572505.2,"95"]},` +
		`{"metric":{"le":"+Inf"},"value":[1795572505.2,"100"]}]}}`)
	mux.HandleFunc("/api/v1/query", func(w http.ResponseWriter, r *http.Request) {
		answer(w, buckets, placeholder, "prometheus")
	})
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		parts := []string{}
		for _, name := range []string{"jaeger", "loki", "prometheus"} {
			g := gauges[name]
			parts = append(parts, fmt.Sprintf(`"%s":{"now":%d,"peak":%d,"total":%d}`, name, g.now.Load(), g.peak.Load(), g.total.Load()))
			if r.URL.Query().Get("reset") != "" {
				g.peak.Store(g.now.Load())
			}
		}
		w.Write([]byte("{" + strings.Join(parts, ",") + "}"))
	})
	server := &http.Server{Addr: "127.0.0.1:" + port, Handler: mux}
	if err := server.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

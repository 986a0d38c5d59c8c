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
	"time"
)

const placeholder = "4bf92f3577b34da6a3ce929d0e0e4736"

var hex32 = regexp.MustCompile(`[0-9a-f]{32}`)

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

	// Prometheus can't filter by trace: answer for the ID Jaeger was last asked (as the Python fake).
	var mu sync.Mutex
	last := placeholder

	answer := func(w http.ResponseWriter, template []byte, traceID string) {
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
		answer(w, trace, id)
	})
	mux.HandleFunc("/loki/api/v1/query_range", func(w http.ResponseWriter, r *http.Request) {
		id := hex32.FindString(r.URL.Query().Get("query"))
		if id == "" {
			id = placeholder
		}
		answer(w, logs, id)
	})
	mux.HandleFunc("/api/v1/query_exemplars", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		id := last
		mu.Unlock()
		answer(w, exemplars, id)
	})
	server := &http.Server{Addr: "127.0.0.1:" + port, Handler: mux}
	if err := server.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

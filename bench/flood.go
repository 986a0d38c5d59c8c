// Open-loop flood for `bench/run.py flood`: RATE correlations/s of unique trace IDs for SECONDS,
// sent on schedule whatever the answers (a Python generator at 600/s spent more CPU than the
// server it measured, and fell behind its own schedule). Prints the same JSON as flood.py open.
//
//	go build -o BIN bench/flood.go && BIN URL RATE SECONDS
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"
)

func main() {
	base := os.Args[1]
	rate, _ := strconv.ParseFloat(os.Args[2], 64)
	seconds, _ := strconv.ParseFloat(os.Args[3], 64)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 2000}}
	var mu sync.Mutex
	samples := map[string][]float64{}
	var wg sync.WaitGroup
	start := time.Now()
	sent := 0
	for time.Since(start).Seconds() < seconds {
		due := int(time.Since(start).Seconds()*rate) - sent
		for i := 0; i < due; i++ {
			sent++
			wg.Add(1)
			go func() {
				defer wg.Done()
				url := fmt.Sprintf("%s/correlate/%016x%016x", base, rand.Uint64(), rand.Uint64())
				t := time.Now()
				status := "error"
				if resp, err := client.Get(url); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					status = strconv.Itoa(resp.StatusCode)
				}
				ms := float64(time.Since(t).Microseconds()) / 1000
				mu.Lock()
				samples[status] = append(samples[status], ms)
				mu.Unlock()
			}()
		}
		time.Sleep(2 * time.Millisecond)
	}
	wg.Wait()
	out := map[string]any{"sent": sent, "seconds": seconds}
	for status, values := range samples {
		sort.Float64s(values)
		p99 := values[min(len(values)-1, int(0.99*float64(len(values))))]
		out[status] = map[string]any{"n": len(values), "p50": values[len(values)/2], "p99": p99, "max": values[len(values)-1]}
	}
	body, _ := json.Marshal(out)
	fmt.Println(string(body))
}

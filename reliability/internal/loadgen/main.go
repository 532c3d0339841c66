// Command loadgen scrapes a URL continuously from several connections for
// a fixed time and prints what it saw as one JSON object: requests,
// failures (transport errors, non-200 answers, bodies without -expect),
// requests per second and latency percentiles. The reliability load test
// runs it as a second process against the agent's /metrics.
//
//	loadgen -url http://127.0.0.1:9317/metrics -duration 20s -concurrency 4 -expect spool_up
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"
)

// Result is what loadgen prints.
type Result struct {
	Requests     int      `json:"requests"`
	Failures     int      `json:"failures"`
	FirstErrors  []string `json:"first_errors,omitempty"`
	Seconds      float64  `json:"seconds"`
	PerSecond    float64  `json:"requests_per_second"`
	P50ms        float64  `json:"p50_ms"`
	P90ms        float64  `json:"p90_ms"`
	P99ms        float64  `json:"p99_ms"`
	Maxms        float64  `json:"max_ms"`
	BytesPerBody float64  `json:"bytes_per_body"`
}

func main() {
	url := flag.String("url", "", "URL to GET")
	duration := flag.Duration("duration", 10*time.Second, "how long to keep scraping")
	concurrency := flag.Int("concurrency", 4, "concurrent connections")
	expect := flag.String("expect", "", "a failure unless the body contains this")
	user := flag.String("user", "", "basic auth user")
	pass := flag.String("pass", "", "basic auth password")
	insecure := flag.Bool("insecure", false, "skip TLS verification")
	timeout := flag.Duration("timeout", 5*time.Second, "per-request timeout")
	flag.Parse()
	if *url == "" {
		fmt.Fprintln(os.Stderr, "loadgen: -url is required")
		os.Exit(2)
	}
	tr := &http.Transport{
		MaxIdleConnsPerHost: *concurrency,
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: *insecure},
	}
	client := &http.Client{Transport: tr, Timeout: *timeout}
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()

	var (
		mu        sync.Mutex
		latencies []time.Duration
		res       Result
		bodyBytes int64
	)
	fail := func(msg string) {
		mu.Lock()
		res.Failures++
		if len(res.FirstErrors) < 5 {
			res.FirstErrors = append(res.FirstErrors, msg)
		}
		mu.Unlock()
	}
	start := time.Now()
	var wg sync.WaitGroup
	for range *concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				req, err := http.NewRequest(http.MethodGet, *url, nil)
				if err != nil {
					fail(err.Error())
					return
				}
				if *user != "" {
					req.SetBasicAuth(*user, *pass)
				}
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					fail(err.Error())
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				lat := time.Since(t0)
				mu.Lock()
				res.Requests++
				latencies = append(latencies, lat)
				bodyBytes += int64(len(body))
				mu.Unlock()
				switch {
				case err != nil:
					fail("reading body: " + err.Error())
				case resp.StatusCode != http.StatusOK:
					fail(fmt.Sprintf("status %d", resp.StatusCode))
				case *expect != "" && !bytes.Contains(body, []byte(*expect)):
					fail("body lacks " + *expect)
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	res.Seconds = el.Seconds()
	res.PerSecond = float64(res.Requests) / el.Seconds()
	if n := len(latencies); n > 0 {
		slices.Sort(latencies)
		pct := func(p float64) float64 {
			i := int(p*float64(n)+0.5) - 1
			i = max(0, min(i, n-1))
			return float64(latencies[i].Microseconds()) / 1000
		}
		res.P50ms, res.P90ms, res.P99ms = pct(0.50), pct(0.90), pct(0.99)
		res.Maxms = float64(latencies[n-1].Microseconds()) / 1000
		res.BytesPerBody = float64(bodyBytes) / float64(n)
	}
	json.NewEncoder(os.Stdout).Encode(res)
	if res.Failures > 0 {
		os.Exit(1)
	}
}

// Command loadgen is a constant-rate (open-loop) HTTP/1.1 keep-alive load
// generator, like wrk2: each request has a scheduled send time on a fixed
// timetable, and its latency runs from that time, not from when it was
// actually sent, so a stalled server is charged for every request it held up
// (no coordinated omission). Each connection sends one request at a time on
// its own share of the timetable; a connection that falls behind sends its
// late requests back to back and their latency shows the backlog. Before the
// clock starts, each connection sends one unmeasured request (-prime), so a
// proxy under test has its upstream connections and handshakes in place.
//
//	loadgen -target 127.0.0.1:8080 -host svc.example -rate 20000 -duration 5s -connections 32 -path /
//
// It prints one JSON report on stdout; bad flags exit 2 with a message.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

type config struct {
	target      string
	host        string
	path        string
	rate        float64
	duration    time.Duration
	connections int
	timeout     time.Duration
	prime       bool
}

type latencyMs struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99.9"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

type report struct {
	Target          string            `json:"target"`
	Path            string            `json:"path"`
	Connections     int               `json:"connections"`
	OfferedRate     float64           `json:"offeredRate"`
	DurationSeconds float64           `json:"durationSeconds"`
	Scheduled       uint64            `json:"scheduled"`
	Sent            uint64            `json:"sent"`
	Completed       uint64            `json:"completed"`
	Errors          map[string]uint64 `json:"errors"`
	AchievedRate    float64           `json:"achievedRate"`
	BytesRead       uint64            `json:"bytesRead"`
	LatencyMs       latencyMs         `json:"latencyMs"`
}

// worker drives one connection through its share of the timetable.
type worker struct {
	conn      conn
	hist      histogram
	scheduled uint64
	sent      uint64
	completed uint64
	errors    map[string]uint64
}

func (w *worker) run(start, end time.Time, offset, interval float64) {
	defer w.conn.close()
	for i := 0; ; i++ {
		at := start.Add(time.Duration(offset + float64(i)*interval))
		if !at.Before(end) {
			return
		}
		w.scheduled++
		if wait := time.Until(at); wait > 0 {
			time.Sleep(wait)
		} else if !time.Now().Before(end) {
			// Behind at the end of the run: the rest of the timetable is never sent.
			w.scheduled += uint64((float64(end.Sub(at)) - 1) / interval)
			return
		}
		status, sent, kind := w.conn.roundTrip()
		if sent {
			w.sent++
		}
		if kind != "" {
			w.errors[kind]++
			continue
		}
		w.hist.record(uint64(time.Since(at)))
		w.completed++
		if status < 200 || status >= 400 {
			w.errors[errStatus]++
		}
	}
}

func parseFlags(args []string) (config, error) {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	var c config
	fs.StringVar(&c.target, "target", "", "host:port to connect to")
	fs.StringVar(&c.host, "host", "", "Host header (default: the target)")
	fs.StringVar(&c.path, "path", "/", "request path")
	fs.Float64Var(&c.rate, "rate", 0, "requests per second over all connections")
	fs.DurationVar(&c.duration, "duration", 5*time.Second, "how long to send")
	fs.IntVar(&c.connections, "connections", 16, "keep-alive connections")
	fs.DurationVar(&c.timeout, "timeout", 2*time.Second, "per-request deadline (connect, write and read)")
	fs.BoolVar(&c.prime, "prime", true, "send one unmeasured request on each connection before the clock starts")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	var problems []string
	if c.target == "" || !strings.Contains(c.target, ":") {
		problems = append(problems, "-target must be host:port")
	}
	if c.rate <= 0 {
		problems = append(problems, "-rate must be > 0")
	}
	if c.duration <= 0 {
		problems = append(problems, "-duration must be > 0")
	}
	if c.connections < 1 {
		problems = append(problems, "-connections must be >= 1")
	}
	if c.timeout <= 0 {
		problems = append(problems, "-timeout must be > 0")
	}
	if !strings.HasPrefix(c.path, "/") {
		problems = append(problems, "-path must start with /")
	}
	if len(problems) > 0 {
		return c, fmt.Errorf("invalid flags: %s", strings.Join(problems, "; "))
	}
	if c.host == "" {
		c.host = c.target
	}
	return c, nil
}

func run(c config) report {
	request := []byte(fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: fedgate-loadgen\r\n\r\n", c.path, c.host))
	workers := make([]*worker, c.connections)
	var ready sync.WaitGroup
	for i := range workers {
		w := &worker{conn: conn{target: c.target, request: request, timeout: c.timeout}, errors: map[string]uint64{}}
		workers[i] = w
		ready.Add(1)
		// Connect before the clock starts, as wrk does; a failure is retried on the first
		// request. Priming also gets a proxy's own upstream connection (and its TLS
		// handshake) set up, so the run measures keep-alive traffic, not connection setup.
		go func() {
			defer ready.Done()
			if c.prime {
				_, _, _ = w.conn.roundTrip() // its outcome is not part of the run
			} else if err := w.conn.dial(); err != nil {
				w.conn.close()
			}
		}()
	}
	ready.Wait()
	// Connection i sends at start + (i + k*connections) / rate: the whole timetable, evenly interleaved.
	interval := float64(time.Second) * float64(c.connections) / c.rate
	start := time.Now()
	end := start.Add(c.duration)
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(start, end, float64(i)*interval/float64(c.connections), interval)
		}()
	}
	wg.Wait()

	r := report{Target: c.target, Path: c.path, Connections: c.connections, OfferedRate: c.rate, DurationSeconds: c.duration.Seconds(), Errors: map[string]uint64{}}
	for _, k := range errorKinds {
		r.Errors[k] = 0
	}
	var all histogram
	for _, w := range workers {
		all.merge(&w.hist)
		r.Scheduled += w.scheduled
		r.Sent += w.sent
		r.Completed += w.completed
		r.BytesRead += w.conn.bytes
		for k, n := range w.errors {
			r.Errors[k] += n
		}
	}
	// Over the scheduled window, as wrk2: the in-flight tail's completions count, its wait does not.
	r.AchievedRate = float64(r.Completed) / c.duration.Seconds()
	ms := func(ns uint64) float64 { return float64(ns) / 1e6 }
	r.LatencyMs = latencyMs{P50: ms(all.percentile(0.50)), P90: ms(all.percentile(0.90)), P99: ms(all.percentile(0.99)), P999: ms(all.percentile(0.999)), Max: ms(all.max)}
	if all.total > 0 {
		r.LatencyMs.Mean = all.sum / float64(all.total) / 1e6
	}
	return r
}

func main() {
	c, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	if err := json.NewEncoder(os.Stdout).Encode(run(c)); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

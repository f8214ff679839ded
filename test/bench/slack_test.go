//go:build bench

package bench

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/nestattest/nestattest/test/harness"
)

// slack tells where a run under added latency spent the time its floor
// (requests x latency / jobs) leaves out, from the proxy's spans: before
// its first request (the process starting, keys read), after its last
// (reporting, exiting), with nothing in flight in between (the longest
// such gaps, and the request each ended with), and with some but fewer
// than jobs requests in flight (as wall time: idle slot-time / jobs). Its
// second line is the requests in flight over the run, a digit a
// twentieth (the mean, rounded; "+" for jobs or more).
func slack(r run, spans []harness.Span, jobs int) string {
	if len(spans) == 0 {
		return "no requests"
	}
	type event struct {
		at    time.Time
		delta int
		req   string
	}
	var events []event
	for _, s := range spans {
		events = append(events, event{s.Start, 1, s.Request}, event{s.End, -1, ""})
	}
	slices.SortFunc(events, func(a, b event) int { return a.at.Compare(b.at) })
	first, last := events[0].at, events[len(events)-1].at
	end := r.start.Add(r.took)
	type gap struct {
		d    time.Duration
		next string
	}
	var (
		gaps     []gap
		idle     time.Duration // nothing in flight
		under    time.Duration // slot-time idle while something was
		inflight int
		prev     = first
		cols     = make([]time.Duration, 20) // in-flight x time per column
		width    = end.Sub(r.start) / 20
	)
	for _, e := range events {
		dt := e.at.Sub(prev)
		if dt > 0 {
			switch {
			case inflight == 0:
				idle += dt
				gaps = append(gaps, gap{dt, e.req})
			case inflight < jobs:
				under += time.Duration(jobs-inflight) * dt
			}
			spread(cols, r.start, width, prev, e.at, inflight)
		}
		inflight += e.delta
		prev = e.at
	}
	slices.SortFunc(gaps, func(a, b gap) int { return int(b.d - a.d) })
	var top []string
	for _, g := range gaps[:min(3, len(gaps))] {
		if g.d >= 20*time.Millisecond {
			top = append(top, fmt.Sprintf("%s before %s", round(g.d), short(g.next)))
		}
	}
	var strip strings.Builder
	for _, c := range cols {
		mean := int(math.Round(float64(c) / float64(width)))
		if mean >= jobs {
			strip.WriteByte('+')
		} else {
			strip.WriteByte(byte('0' + mean))
		}
	}
	return fmt.Sprintf("slack: before the first request %s, after the last %s, nothing in flight %s %v, fewer than %d in flight %s\n          in flight: %s",
		round(first.Sub(r.start)), round(end.Sub(last)), round(idle), top, jobs, round(under/time.Duration(jobs)), strip.String())
}

// spread adds n requests in flight from a to b to the columns, each width
// long from start.
func spread(cols []time.Duration, start time.Time, width time.Duration, a, b time.Time, n int) {
	if n == 0 {
		return
	}
	for i := range cols {
		lo, hi := start.Add(time.Duration(i)*width), start.Add(time.Duration(i+1)*width)
		from, to := maxTime(a, lo), minTime(b, hi)
		if to.After(from) {
			cols[i] += time.Duration(n) * to.Sub(from)
		}
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// short shortens a request to its method and the last part of its path.
func short(req string) string {
	method, path, _ := strings.Cut(req, " ")
	path, _, _ = strings.Cut(path, "?")
	if i := strings.LastIndex(path, "/"); i >= 0 && i < len(path)-1 {
		parts := strings.Split(path, "/")
		if len(parts) >= 2 {
			path = strings.Join(parts[len(parts)-2:], "/")
		}
	}
	return method + " " + path
}

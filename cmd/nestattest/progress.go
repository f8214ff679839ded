package main

import (
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/term"
)

// progress shows, on a terminal only, what a run is doing: its phase
// (reading the tree, signing, verifying), how many nodes are done of how
// many, how many failed, the rate and the time left. It redraws one line
// at most ten times a second and clears it when the phase ends.
type progress struct {
	w   io.Writer
	tty bool

	mu                  sync.Mutex
	phase               string
	total, done, failed int
	started, drawn      time.Time
}

// newProgress returns progress for s's standard error: silent unless it is
// a terminal.
func newProgress(s streams) *progress {
	return &progress{w: s.err, tty: s.errFile != nil && term.IsTerminal(int(s.errFile.Fd()))}
}

// start begins a phase; total is 0 when it is not known yet.
func (p *progress) start(phase string, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.phase, p.total, p.done, p.failed, p.started = phase, total, 0, 0, time.Now()
	p.draw(true)
}

// step counts a node done.
func (p *progress) step(failed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	if failed {
		p.failed++
	}
	p.draw(false)
}

// grow counts one more node to do: a phase whose total grows as the tree
// is read (verify checks nodes as the walk finds them).
func (p *progress) grow() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total++
}

// end clears the line.
func (p *progress) end() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.phase != "" {
		fmt.Fprint(p.w, "\r\033[K")
	}
	p.phase = ""
}

func (p *progress) draw(force bool) {
	if !p.tty || (!force && time.Since(p.drawn) < 100*time.Millisecond && p.done != p.total) {
		return
	}
	p.drawn = time.Now()
	fmt.Fprint(p.w, "\r\033[K"+p.line())
}

// line is "signing: 120/451 nodes, 2 failed, 85 nodes/s, 4s left".
func (p *progress) line() string {
	s := fmt.Sprintf("%s: %d", p.phase, p.done)
	if p.total > 0 {
		s += fmt.Sprintf("/%d", p.total)
	}
	s += " nodes"
	if p.failed > 0 {
		s += fmt.Sprintf(", %d failed", p.failed)
	}
	elapsed := time.Since(p.started).Seconds()
	if p.done > 0 && elapsed > 0.5 {
		rate := float64(p.done) / elapsed
		s += fmt.Sprintf(", %.0f nodes/s", rate)
		if p.total > p.done {
			s += fmt.Sprintf(", %s left", (time.Duration(float64(p.total-p.done)/rate) * time.Second).Round(time.Second))
		}
	}
	return s
}

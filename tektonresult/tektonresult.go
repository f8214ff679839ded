// Package tektonresult sizes the results a step hands to Tekton the way
// Tekton Pipelines (v1.14.0) reads them back, so that a result that would not
// fit is left out whole, and said so, instead of failing the step or being
// cut short.
//
// Tekton reads a step's results one of two ways (its results-from feature
// flag). By default, termination-message: the entrypoint writes every result
// file of the step, and entries of its own, as one JSON array into the
// container's termination message, which Kubernetes caps at 4,096 bytes; a
// longer message fails the step. With sidecar-logs, a sidecar prints each
// result as one JSON line, and the controller refuses a line longer than
// max-result-size (4,096 bytes by default). Tekton's
// enable-termination-message-compression flag compresses the message when that
// makes it shorter; a message that fits uncompressed always fits, so these
// sizes hold there too, if conservatively.
package tektonresult

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
)

const (
	// TerminationMessageLimit is the most a container's termination message
	// may hold: Tekton's termination.MaxContainerTerminationMessageLength,
	// Kubernetes' own cap. All the results of one step share it.
	TerminationMessageLimit = 4096
	// DefaultMaxResultSize is the default of Tekton's max-result-size
	// feature flag: the longest line, one result, the results sidecar may
	// print (results-from: sidecar-logs).
	DefaultMaxResultSize = 4096
	// MaxResultSizeCeiling is the first max-result-size Tekton refuses: the
	// size of a custom resource in etcd, 1.5 MiB.
	MaxResultSizeCeiling = 1572864
)

// From is how Tekton reads the results: the values of its results-from
// feature flag.
type From string

const (
	// FromTerminationMessage: every result of a step in its container's
	// termination message (Tekton's default).
	FromTerminationMessage From = "termination-message"
	// FromSidecarLogs: each result a line of the results sidecar's log.
	FromSidecarLogs From = "sidecar-logs"
)

// Limits say how results reach Tekton and how big they may be.
type Limits struct {
	// From is Tekton's results-from.
	From From
	// MaxResultSize is Tekton's max-result-size, with FromSidecarLogs.
	MaxResultSize int
}

// Check refuses limits Tekton would not run with.
func (l Limits) Check() error {
	switch l.From {
	case FromTerminationMessage:
		return nil
	case FromSidecarLogs:
		if l.MaxResultSize <= 0 || l.MaxResultSize >= MaxResultSizeCeiling {
			return fmt.Errorf("max-result-size %d: Tekton takes 1 to %d bytes", l.MaxResultSize, MaxResultSizeCeiling-1)
		}
		return nil
	}
	return fmt.Errorf("results-from %q: Tekton reads results from %s or %s", l.From, FromTerminationMessage, FromSidecarLogs)
}

// Result is one result a step writes: its name and its exact value.
type Result struct {
	Name  string
	Value string
}

// Step is who writes results, read from the directory they are written to:
// Task results (/tekton/results) or the step results of a step
// (/tekton/steps/step-NAME/results), which Tekton names and types
// differently.
type Step struct {
	// Dir is the container directory of the step in /tekton/steps
	// (step-NAME), or "" for Task results.
	Dir string
}

// StepOf returns who writes results into dir, as Tekton lays its results
// directories out.
func StepOf(dir string) Step {
	dir = filepath.ToSlash(filepath.Clean(dir))
	if parent, base := filepath.Split(dir); base == "results" {
		steps, name := filepath.Split(strings.TrimSuffix(parent, "/"))
		if strings.TrimSuffix(steps, "/") == "/tekton/steps" && name != "" {
			return Step{Dir: name}
		}
	}
	return Step{}
}

// The entrypoint's result types in a termination message (Tekton's
// result.ResultType) and the sidecar's.
const (
	taskRunResultType  = 1
	internalResultType = 3
	stepResultType     = 4
)

// entry is a termination message entry, Tekton's result.RunResult as it is
// marshalled.
type entry struct {
	Key   string `json:"key"`
	Value string `json:"value"`
	Type  int    `json:"type,omitempty"`
}

// sidecarLine is a line of the results sidecar, Tekton's
// sidecarlogresults.SidecarLogResult.
type sidecarLine struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	Type  string `json:"type"`
}

// reserved are the entrypoint's own entries in the same termination
// message, at their longest: when the step started (its time format,
// "2006-01-02T15:04:05.000Z07:00", with an offset) and, under onError:
// continue, the exit code.
var reserved = []entry{
	{Key: "StartedAt", Value: "2006-01-02T15:04:05.000-07:00", Type: internalResultType},
	{Key: "ExitCode", Value: "255", Type: internalResultType},
}

// Size returns how many bytes rs take where Tekton limits them, and that
// limit: with FromTerminationMessage the whole message of the step (rs and
// the entrypoint's own entries), with FromSidecarLogs the longest line.
func (l Limits) Size(s Step, rs []Result) (size, limit int) {
	if l.From == FromSidecarLogs {
		for _, r := range rs {
			line := sidecarLine{Name: r.Name, Value: r.Value, Type: "task"}
			if s.Dir != "" {
				line = sidecarLine{Name: s.Dir + "." + r.Name, Value: r.Value, Type: "step"}
			}
			size = max(size, marshalledLen(line))
		}
		return size, l.MaxResultSize
	}
	typ := taskRunResultType
	if s.Dir != "" {
		typ = stepResultType
	}
	entries := make([]entry, 0, len(rs)+len(reserved))
	for _, r := range rs {
		entries = append(entries, entry{Key: r.Name, Value: r.Value, Type: typ})
	}
	return marshalledLen(append(entries, reserved...)), TerminationMessageLimit
}

// Fits says whether rs, written by s, reach Tekton whole.
func (l Limits) Fits(s Step, rs []Result) bool {
	size, limit := l.Size(s, rs)
	return size <= limit
}

// marshalledLen is the length of v as Go's encoding/json writes it, which
// Tekton's entrypoint and sidecar use.
func marshalledLen(v any) int {
	b, err := json.Marshal(v)
	if err != nil { // strings and ints only: cannot happen
		panic(err)
	}
	return len(b)
}

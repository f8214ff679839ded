package tektonresult

import (
	"strings"
	"testing"
)

func TestStepOf(t *testing.T) {
	for dir, want := range map[string]Step{
		"/tekton/results":                              {},
		"/tekton/results/IMAGE_URL/..":                 {},
		"/tekton/steps/step-sign/results":              {Dir: "step-sign"},
		"/tekton/steps/step-sign/results/IMAGE_URL/..": {Dir: "step-sign"},
		"/tmp/results":                                 {},
	} {
		if got := StepOf(dir); got != want {
			t.Errorf("StepOf(%q) = %+v, want %+v", dir, got, want)
		}
	}
}

func TestCheck(t *testing.T) {
	for _, c := range []struct {
		l  Limits
		ok bool
	}{
		{Limits{From: FromTerminationMessage}, true},
		{Limits{From: FromSidecarLogs, MaxResultSize: DefaultMaxResultSize}, true},
		{Limits{From: FromSidecarLogs, MaxResultSize: MaxResultSizeCeiling - 1}, true},
		{Limits{From: FromSidecarLogs, MaxResultSize: MaxResultSizeCeiling}, false},
		{Limits{From: FromSidecarLogs}, false},
		{Limits{From: "results-api"}, false},
	} {
		if err := c.l.Check(); (err == nil) != c.ok {
			t.Errorf("%+v: %v", c.l, err)
		}
	}
}

// TestSidecarLine: with sidecar-logs each result is its own line, named
// <step>.<result> for a step result, and only that line counts.
func TestSidecarLine(t *testing.T) {
	l := Limits{From: FromSidecarLogs, MaxResultSize: 100}
	value := strings.Repeat("a", 100-len(`{"name":"IMAGES","value":"","type":"task"}`))
	rs := []Result{{Name: "IMAGE_URL", Value: "quay.io/org/ko-build:v1"}, {Name: "IMAGES", Value: value}}
	if size, limit := l.Size(Step{}, rs); size != 100 || limit != 100 || !l.Fits(Step{}, rs) {
		t.Errorf("task result: %d of %d", size, limit)
	}
	if size, _ := l.Size(Step{Dir: "step-sign"}, rs); size != 100+len("step-sign.") {
		t.Errorf("step result: %d bytes, want %d", size, 100+len("step-sign."))
	}
}

package trees

import (
	"context"
	"errors"
	"fmt"

	"github.com/nestattest/nestattest/attest"
	"github.com/nestattest/nestattest/walk"
)

// Outcome is what happened to one signature or attestation, or to a node:
// one word in text, JSON and the docs alike.
type Outcome string

// The outcomes.
const (
	// Written: this run wrote it (or, for a node, something of it).
	Written Outcome = "written"
	// Present: it was there already, by this signer; nothing written.
	Present Outcome = "present"
	// Failed: it could not be written or checked.
	Failed Outcome = "failed"
	// Pending: the run stopped (interrupted) before reaching it.
	Pending Outcome = "pending"
)

// Placement is what a node holds in one repository and layout: its own
// repository, or the root's where it was mirrored.
type Placement struct {
	Repository  string        `json:"repository"`
	Layout      attest.Layout `json:"layout"`
	Signature   Outcome       `json:"signature"`
	Attestation Outcome       `json:"attestation"`
}

// NodeResult is the outcome for one node.
type NodeResult struct {
	Node   *walk.Node
	Places []Placement
	Err    error
	// Attached is what Options.Attached found on the node, attested in
	// every place; nil when it found nothing, or was not asked.
	Attached []*Source

	pending bool
}

// Outcome sums the node up: failed, pending, written when this run wrote
// anything of it, else present.
func (r NodeResult) Outcome() Outcome {
	switch {
	case r.pending:
		return Pending
	case r.Err != nil:
		return Failed
	}
	for _, p := range r.Places {
		if p.Signature == Written || p.Attestation == Written {
			return Written
		}
	}
	return Present
}

// Report is the outcome of a run, a result per node in the order given.
type Report struct {
	Results []NodeResult
	// Interrupted says the run was stopped before every node was done.
	Interrupted bool
	// Unreachable, when set, is the shared service the run could not reach:
	// the nodes not yet started when a node met it are pending.
	Unreachable *attest.UnreachableError
	// Restored counts the writes that another writer had overwritten after
	// this run made them, found by the final confirmation and made again.
	Restored int
	// SettleErr is why the final confirmation failed, if it did.
	SettleErr error
	// Signatures counts the signatures the Signer made: each one Sign call
	// (one request to a KMS), and with witnesses one transparency-log
	// entry and one timestamp.
	Signatures int
	// Statements counts the tree statements signed (StatementsTree), among
	// the Signatures.
	Statements int
}

// Tally counts nodes by outcome, and the signatures and attestations
// written.
type Tally struct {
	Nodes   int `json:"nodes"`
	Written int `json:"written"`
	Present int `json:"present"`
	Failed  int `json:"failed"`
	Pending int `json:"pending"`
	// Mirrored counts nodes also signed where they are mirrored in the
	// root's repository.
	Mirrored int `json:"mirrored"`
	// Signatures and Attestations count what this run wrote, over every
	// repository and layout.
	Signatures   int `json:"signaturesWritten"`
	Attestations int `json:"attestationsWritten"`
	// Restored is Report.Restored.
	Restored int `json:"restored,omitempty"`
}

// Tally counts the report.
func (r *Report) Tally() Tally {
	t := Tally{Nodes: len(r.Results), Restored: r.Restored}
	for _, res := range r.Results {
		if mirroredPlaces(res.Places) {
			t.Mirrored++
		}
		switch res.Outcome() {
		case Failed:
			t.Failed++
		case Pending:
			t.Pending++
		case Written:
			t.Written++
		default:
			t.Present++
		}
		for _, p := range res.Places {
			t.Signatures += btoi(p.Signature == Written)
			t.Attestations += btoi(p.Attestation == Written)
		}
	}
	return t
}

func mirroredPlaces(ps []Placement) bool {
	for _, p := range ps[min(1, len(ps)):] {
		if p.Repository != ps[0].Repository {
			return true
		}
	}
	return false
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// err joins the failures of the report.
func (r *Report) err() error {
	var errs []error
	for _, res := range r.Results {
		if res.Err != nil {
			errs = append(errs, res.Err)
		}
	}
	if r.SettleErr != nil {
		errs = append(errs, fmt.Errorf("confirming the tags this run wrote: %w", r.SettleErr))
	}
	return errors.Join(errs...)
}

// interrupted reports an error that only says the run was stopped.
func interrupted(ctx context.Context, err error) bool {
	return ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded))
}

package main

import (
	"fmt"

	"github.com/nestattest/nestattest/attest"
	"github.com/nestattest/nestattest/attest/trees"
)

// unreachableError is a service every node needs that could not be
// reached, said once, with what the run did and the ways out. It exits
// with ExitFailed: the flags may be right and the service down.
type unreachableError struct {
	u *attest.UnreachableError
	// done says how far the run got: "; the run stopped: 0 of 13 nodes
	// written, 8 met it, 5 not started"; empty when nothing had started.
	done string
}

func (e unreachableError) Error() string {
	return e.u.Error() + e.done + ". " + waysOut(e.u.Service)
}

func (e unreachableError) Unwrap() error { return e.u }

// waysOut says how to go on without the service, or reach it.
func waysOut(service string) string {
	switch service {
	case attest.ServiceTlog:
		return "Name a log that can be reached with --rekor-url (or in --signing-config), or, signing with a key alone, pass --tlog-upload=false"
	case attest.ServiceTSA:
		return "Name an authority that can be reached with --timestamp-server-url (or in --signing-config), or leave it out to sign without timestamps"
	case attest.ServiceFulcio:
		return "Name a Fulcio that can be reached with --fulcio-url (or in --signing-config), or sign with --key (a KMS key)"
	case attest.ServiceKMS:
		return "Check the KMS endpoint of --key and the provider's settings (AWS_ENDPOINT_URL and AWS_REGION, VAULT_ADDR, GCP or Azure credentials) and the network, or sign keylessly"
	}
	return "Check the URL and the network"
}

// stopped is the error of a run that stopped at an unreachable service.
func stopped(rep *trees.Report) error {
	t := rep.Tally()
	return unreachableError{u: rep.Unreachable, done: fmt.Sprintf("; the run stopped: %d of %s written, %d met it, %d not started",
		t.Written, plural(t.Nodes, "node"), t.Failed, t.Pending)}
}

package attesttest

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/sigstore/sigstore-go/pkg/testing/ca"

	"github.com/nestattest/nestattest/attest"
)

// VirtualTSA is an attest.Witness that countersigns with sigstore-go's
// in-process timestamp authority, after Delay, so that a run can outlive
// its certificates.
type VirtualTSA struct {
	VS    *ca.VirtualSigstore
	Delay time.Duration
	n     atomic.Int32
}

// Require implements attest.Witness.
func (v *VirtualTSA) Require(t *attest.Trust, _ attest.Keeps) { t.UseSignedTimestamps = true }

// Witness implements attest.Witness: the signature is timestamped, and
// the envelope too where the layout timestamps envelopes.
func (v *VirtualTSA) Witness(_ context.Context, s *attest.Signed, k attest.Keeps) error {
	time.Sleep(v.Delay)
	ts, err := v.VS.TimestampResponse(s.Signature)
	if err != nil {
		return err
	}
	s.Material.Timestamps = append(s.Material.Timestamps, ts)
	v.n.Add(1)
	if k.EnvelopeTimestamps && s.DSSE() {
		env, err := s.Envelope()
		if err != nil {
			return err
		}
		if ts, err = v.VS.TimestampResponse(env); err != nil {
			return err
		}
		s.Material.EnvelopeTimestamps = append(s.Material.EnvelopeTimestamps, ts)
	}
	return nil
}

// Timestamps is how many signatures it timestamped.
func (v *VirtualTSA) Timestamps() int { return int(v.n.Load()) }

package evidence

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/nestattest/nestattest/attest"
)

// TlogWitness logs every signed payload in a transparency log (Rekor v1 or
// v2, through sigstore-go) and keeps the entry with it: a hashedrekord
// entry for a simple-signing signature, a dsse entry for an envelope.
type TlogWitness struct {
	Log sign.Transparency
	// URL is where the log is, for an error when it cannot be reached.
	URL string
	// Version is the log's major API version: 1 (also when zero) or 2.
	// A layout keeps the entries of some versions only (attest.Keeps).
	Version uint32
	entries atomic.Int32
}

// Require implements attest.Witness: a transparency-log entry, where the
// layout keeps this log's entries.
func (w *TlogWitness) Require(t *attest.Trust, k attest.Keeps) {
	if k.Tlog(w.Version) {
		t.IgnoreTlog = false
	}
}

// Witness implements attest.Witness: the entry is logged whatever the
// layout keeps, as cosign logs it.
func (w *TlogWitness) Witness(ctx context.Context, s *attest.Signed, _ attest.Keeps) error {
	b, err := attest.ProtoBundle(s, "")
	if err != nil {
		return err
	}
	pem, err := signerPEM(s.Material)
	if err != nil {
		return err
	}
	if err := w.Log.GetTransparencyLogEntry(ctx, pem, b); err != nil {
		if err = attest.Unreachable(attest.ServiceTlog, w.URL, err); errors.Is(err, attest.ErrUnreachable) {
			return err
		}
		return fmt.Errorf("transparency log: %w", err)
	}
	s.Material.TlogEntries = b.GetVerificationMaterial().GetTlogEntries()
	w.entries.Add(1)
	return nil
}

// Entries is how many entries the witness logged.
func (w *TlogWitness) Entries() int { return int(w.entries.Load()) }

// TimestampWitness has a timestamp authority countersign every signature
// (RFC 3161), so it verifies after its certificate has expired.
type TimestampWitness struct {
	TSA *sign.TimestampAuthority
	// URL is where the authority is, for an error when it cannot be
	// reached.
	URL        string
	timestamps atomic.Int32
}

// Require implements attest.Witness: a timestamp from a trusted authority.
func (w *TimestampWitness) Require(t *attest.Trust, _ attest.Keeps) { t.UseSignedTimestamps = true }

// Witness implements attest.Witness: the signature is timestamped, and a
// DSSE envelope too where the layout timestamps envelopes (cosign's
// legacy layout timestamps an attestation's envelope, not its signature).
func (w *TimestampWitness) Witness(ctx context.Context, s *attest.Signed, k attest.Keeps) error {
	ts, err := w.TSA.GetTimestamp(ctx, s.Signature)
	if err != nil {
		return w.failed(err)
	}
	s.Material.Timestamps = append(s.Material.Timestamps, ts)
	w.timestamps.Add(1)
	if !k.EnvelopeTimestamps || !s.DSSE() {
		return nil
	}
	env, err := s.Envelope()
	if err != nil {
		return err
	}
	if ts, err = w.TSA.GetTimestamp(ctx, env); err != nil {
		return w.failed(err)
	}
	s.Material.EnvelopeTimestamps = append(s.Material.EnvelopeTimestamps, ts)
	w.timestamps.Add(1)
	return nil
}

func (w *TimestampWitness) failed(err error) error {
	if err = attest.Unreachable(attest.ServiceTSA, w.URL, err); errors.Is(err, attest.ErrUnreachable) {
		return err
	}
	return fmt.Errorf("timestamp authority: %w", err)
}

// Timestamps is how many timestamps the witness got.
func (w *TimestampWitness) Timestamps() int { return int(w.timestamps.Load()) }

// signerPEM is the PEM of a signature's certificate or public key, as a
// transparency log takes it.
func signerPEM(m attest.Material) ([]byte, error) {
	if len(m.Chain) > 0 {
		return cryptoutils.MarshalCertificateToPEM(m.Chain[0])
	}
	if m.PublicKey != nil {
		return cryptoutils.MarshalPublicKeyToPEM(m.PublicKey)
	}
	return nil, fmt.Errorf("a signature to log needs its certificate or public key")
}

package trees

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/nestattest/nestattest/attest"
	"github.com/nestattest/nestattest/attest/layout"
	"github.com/sigstore/sigstore/pkg/signature"
)

// testSigner signs with a fresh ECDSA P-256 key, as a cosign key signs:
// the Signer of a run in these tests (package identity, which holds the
// real ones, imports attest).
type testSigner struct {
	sv  signature.SignerVerifier
	pub crypto.PublicKey
}

func loadTestKey(t testing.TB) *testSigner {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := signature.LoadECDSASignerVerifier(priv, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return &testSigner{sv: sv, pub: priv.Public()}
}

func (s *testSigner) Sign(_ context.Context, message []byte) ([]byte, attest.Material, error) {
	sig, err := s.sv.SignMessage(bytes.NewReader(message))
	return sig, attest.Material{PublicKey: s.pub}, err
}

func (s *testSigner) Trust() attest.Trust       { return attest.Trust{Key: s.pub} }
func (s *testSigner) Identity() attest.Identity { return attest.Identity{Key: s.pub, KeyRef: "test"} }

// storesOf are the stores of layouts, in that order.
func storesOf(t testing.TB, layouts ...attest.Layout) []attest.Store {
	t.Helper()
	var out []attest.Store
	for _, l := range layouts {
		s, err := layout.Read(string(l))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s...)
	}
	return out
}

func mustRepo(t testing.TB, s string) name.Repository {
	t.Helper()
	repo, err := name.NewRepository(s)
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

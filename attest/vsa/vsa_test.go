package vsa_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nestattest/nestattest/attest"
	"github.com/nestattest/nestattest/attest/identity"
	"github.com/nestattest/nestattest/attest/internal/attesttest"
	"github.com/nestattest/nestattest/attest/legacy"
	"github.com/nestattest/nestattest/attest/trees"
	"github.com/nestattest/nestattest/attest/vsa"
	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

func loadKey(t *testing.T, name string) *identity.KeySigner {
	t.Helper()
	pw := func(bool) ([]byte, error) { return []byte("pw"), nil }
	key, _, err := identity.GenerateKeyPair(filepath.Join(t.TempDir(), name), pw)
	if err != nil {
		t.Fatal(err)
	}
	s, err := identity.LoadKey(context.Background(), key, func() ([]byte, error) { return []byte("pw"), nil })
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestWrite: after verify, every node that passed carries a summary by
// the VSA key, PASSED, naming the node, the policy by digest and the
// stored signature and provenance it passed with; a leaf left unsigned
// fails and gets none; a re-run writes nothing; in tree mode one
// statement covers them all.
func TestWrite(t *testing.T) {
	for _, mode := range []trees.Statements{trees.StatementsNode, trees.StatementsTree} {
		t.Run(string(mode), func(t *testing.T) {
			ctx := context.Background()
			r := attesttest.NewRegistry(t, false)
			c := registry.NewClient(registry.Options{})
			tree := r.PushKo(t, c)
			builder, verifier := loadKey(t, "builder"), loadKey(t, "vsa")
			stores := []attest.Store{legacy.Store{}}
			sopts := trees.Options{Signer: builder, Stores: stores, Client: c, BindRoot: true, Settle: -1}
			if _, err := trees.Sign(ctx, tree, sopts); err != nil {
				t.Fatal(err)
			}
			var unsigned *walk.Node
			for _, n := range tree.Nodes {
				if n.Kind == walk.KindImage {
					unsigned = n
				}
			}
			if err := remote.Delete(legacy.Tag(unsigned.Repository, unsigned.Descriptor.Digest, attest.KindSignature)); err != nil {
				t.Fatal(err)
			}
			trust := attest.Trust{Key: builder.Identity().Key, IgnoreTlog: true}
			req := attest.Requirements{Types: []string{"slsaprovenance1"}, RequireRoot: true}
			vrep, err := trees.Verify(ctx, tree, trees.VerifyOptions{Trust: trust, Require: req, Stores: stores, Client: c})
			if err != nil || vrep.Failed() == 0 {
				t.Fatalf("verify: %d failed, %v", vrep.Failed(), err)
			}
			policy, err := vsa.NewPolicy(trust, req, tree.Root.Digest().String(), false)
			if err != nil {
				t.Fatal(err)
			}
			s := &vsa.Summaries{Policy: policy, Version: "test", Time: time.Now()}
			wopts := trees.Options{Signer: verifier, Stores: stores, Client: c, Statements: mode, Settle: -1}
			rep, err := vsa.Write(ctx, tree, vrep, s, wopts)
			if err != nil || len(rep.Results) != len(tree.Nodes)-vrep.Failed() {
				t.Fatalf("write: %d results, %v", len(rep.Results), err)
			}
			before := r.Writes()
			again, err := vsa.Write(ctx, tree, vrep, &vsa.Summaries{Policy: policy, Version: "test", Time: time.Now().Add(time.Hour)}, wopts)
			if err != nil || again.Tally().Written != 0 || r.Writes() != before {
				t.Errorf("re-run: %+v, %d writes, %v", again.Tally(), r.Writes()-before, err)
			}

			vtrust := attest.Trust{Key: verifier.Identity().Key, IgnoreTlog: true}
			check, err := trees.Verify(ctx, tree, trees.VerifyOptions{Trust: vtrust, Require: attest.Requirements{Types: []string{vsa.PredicateType}}, Stores: stores, Client: c})
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range check.Verdicts {
				att := v.Checks[1]
				if v.Node == unsigned {
					if att.OK {
						t.Errorf("the unsigned leaf carries a summary")
					}
					continue
				}
				if !att.OK {
					t.Errorf("%s: %s", v.Node.Path(), v.Reasons())
					continue
				}
				checkSummary(t, ctx, c, v, policy, mode)
			}
		})
	}
}

func checkSummary(t *testing.T, ctx context.Context, c *registry.Client, v trees.Verdict, policy vsa.Policy, mode trees.Statements) {
	t.Helper()
	sub := attest.Subject{Repository: v.Node.Repository, Descriptor: v.Node.Descriptor}
	entries, err := legacy.Store{}.List(ctx, c, sub)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.PredicateType != vsa.PredicateType {
			continue
		}
		s, err := e.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var st struct {
			Subject   []json.RawMessage
			Predicate vsa.Predicate
		}
		if err := json.Unmarshal(s.Payload, &st); err != nil {
			t.Fatal(err)
		}
		p := st.Predicate
		wantRes := vsa.ResourceURI(v.Node)
		if mode == trees.StatementsTree {
			wantRes = vsa.ResourceURI(v.Node.Root())
		}
		d := policy.Digest()
		if p.VerificationResult != "PASSED" || p.ResourceURI != wantRes || p.Policy.Digest[d.Algorithm] != d.Hex ||
			len(p.InputAttestations) < 2 || len(p.VerifiedLevels) != 1 || p.Verifier.ID != vsa.VerifierID {
			t.Errorf("%s: summary %+v", v.Node.Path(), p)
		}
		if mode == trees.StatementsNode && len(st.Subject) != 1 {
			t.Errorf("%s: %d subjects", v.Node.Path(), len(st.Subject))
		}
		return
	}
	t.Errorf("%s: no summary", v.Node.Path())
}

package trees

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nestattest/nestattest/attest"
	"github.com/nestattest/nestattest/attest/statement"
	"github.com/nestattest/nestattest/catalog"
	"github.com/nestattest/nestattest/registry"
	"github.com/nestattest/nestattest/walk"
)

// nodeAttempts is how many times a node that failed for a passing reason
// (a registry error the client's own retries did not outlast) is signed
// again within a run. Signing a node is idempotent.
const nodeAttempts = 3

// node signs and attests one node in its repository and, where it is
// mirrored, in the root's. What an earlier attempt wrote before it failed
// is reported written, not present, when a later attempt finds it.
func (r *run) node(ctx context.Context, n *walk.Node) NodeResult {
	sent := &sentSet{}
	var res NodeResult
	for attempt := 1; ; attempt++ {
		res = r.nodeOnce(ctx, n, sent)
		switch {
		case res.Err != nil && interrupted(ctx, res.Err):
			return NodeResult{Node: n, Places: res.Places, pending: true}
		case res.Err == nil || attempt == nodeAttempts || !transient(res.Err):
			return res
		}
	}
}

func (r *run) nodeOnce(ctx context.Context, n *walk.Node, sent *sentSet) NodeResult {
	res := NodeResult{Node: n}
	repos, err := r.places(ctx, n)
	if err == nil {
		res.Attached, err = r.attached(ctx, n)
	}
	if err != nil {
		res.Err = walk.Errorf("sign", n, err)
		return res
	}
	for _, repo := range repos {
		sub := attest.Subject{Repository: repo, Descriptor: v1.Descriptor{
			MediaType: n.Descriptor.MediaType, Digest: n.Descriptor.Digest, Size: n.Descriptor.Size,
		}}
		atts := append(r.attestations(n, sub), r.attachedAttestations(sub, res.Attached)...)
		for _, store := range r.opts.Stores {
			p := Placement{Repository: repo.Name(), Layout: store.Layout(), Signature: Failed, Attestation: Failed}
			var entries []*attest.Entry
			if r.opts.AttestOnly {
				p.Signature = ""
			}
			if entries, err = store.List(ctx, r.opts.Client, sub); err == nil && !r.opts.AttestOnly {
				p.Signature, err = r.signature(ctx, store, sub, entries, sent)
			}
			for i, att := range atts {
				if err != nil {
					break
				}
				var o Outcome
				o, err = r.attestation(ctx, store, att, entries, sent)
				p.Attestation = combine(p.Attestation, o, i == 0)
			}
			res.Places = append(res.Places, p)
			if err != nil {
				res.Err = walk.Errorf("sign", n, err)
				return res
			}
		}
	}
	return res
}

// transient reports whether a failure may pass: anything but a refusal
// (401, 403), a bad predicate or key, or a rejected signer.
func transient(err error) bool {
	return !errors.Is(err, registry.ErrDenied) && !errors.Is(err, attest.ErrPredicate) && !errors.Is(err, attest.ErrKey)
}

// places are the repositories a node is signed in: its own and, with
// Mirrors, the root's where catalog mirrored it.
func (r *run) places(ctx context.Context, n *walk.Node) ([]name.Repository, error) {
	repos := []name.Repository{n.Repository}
	if !r.opts.Mirrors {
		return repos, nil
	}
	mirror, err := r.mirrors.find(ctx, r.opts.Client, n)
	if err != nil || mirror == nil {
		return repos, err
	}
	return append(repos, *mirror), nil
}

// mirrorLookup finds where catalog mirrored a node into the root's
// repository, for sign and verify alike. catalog mirrors each child of the
// root with everything below it, children first, so one look per child of
// the root tells.
type mirrorLookup struct {
	tops onceMap[*walk.Node, bool]
}

// find returns the root's repository when n's copy is there, else nil.
func (m *mirrorLookup) find(ctx context.Context, c *registry.Client, n *walk.Node) (*name.Repository, error) {
	repo, ok := catalog.MirrorRepository(n)
	if !ok {
		return nil, nil
	}
	top := topChild(n)
	there, err := m.tops.do(top, func() (bool, error) {
		ok, err := c.HasManifest(ctx, repo, top.Descriptor)
		if err != nil {
			return false, fmt.Errorf("look for a mirrored copy in %s: %w", repo, err)
		}
		return ok, nil
	})
	if err != nil || !there {
		return nil, err
	}
	return &repo, nil
}

// topChild returns the child of the root that n is, or is below.
func topChild(n *walk.Node) *walk.Node {
	for n.Parent != nil && n.Parent.Parent != nil {
		n = n.Parent
	}
	return n
}

// signature adds the signer's signature of sub in store unless it is there.
//
// Nodes that share a digest in one repository (a mirrored image listed
// under several paths) share one signature payload: one of them checks and
// writes it, the others wait and find it present.
func (r *run) signature(ctx context.Context, store attest.Store, sub attest.Subject, entries []*attest.Entry, sent *sentSet) (Outcome, error) {
	ptype, payload, err := store.SignaturePayload(sub, r.annotations)
	if err != nil {
		return Failed, err
	}
	w := wanted{
		Signed: attest.Signed{Subject: sub, Kind: attest.KindSignature, PayloadType: ptype, Payload: payload},
		store:  store,
		key:    sentKey{store.Layout(), sub.Repository.Name(), attest.KindSignature, ""},
	}
	w.sign = func() (*attest.Signed, error) { return r.signPayload(ctx, w.Signed, store.Keeps()) }
	out, first, err := r.signed.do(fmt.Sprintf("%s %s %s", store.Layout(), sub.Repository.Name(), statement.Digest(payload)), func() (Outcome, error) {
		return r.add(ctx, w, ofKind(entries, attest.KindSignature), sent)
	})
	if first {
		return out, err
	}
	// Done already: by another node sharing the payload (present for this
	// one), or by an earlier attempt at this node (written by this run).
	return sent.present(w.key), nil
}

// attestation adds the node's attestation in store unless an attestation
// with the same statement is there that passes this run's policy.
func (r *run) attestation(ctx context.Context, store attest.Store, att *lazyAttestation, entries []*attest.Entry, sent *sentSet) (Outcome, error) {
	stmt, err := att.statement()
	if err != nil {
		return Failed, err
	}
	return r.add(ctx, wanted{
		Signed: attest.Signed{Subject: att.sub, Kind: attest.KindAttestation, PayloadType: attest.PayloadInToto, Payload: stmt},
		store:  store,
		key:    sentKey{store.Layout(), att.sub.Repository.Name(), attest.KindAttestation, statement.Digest(stmt).String()},
		sign:   func() (*attest.Signed, error) { return att.signed(ctx) },
	}, ofKind(entries, attest.KindAttestation), sent)
}

// wanted is one payload a node must carry in a store, a signature or an
// attestation: a Signed not signed yet (its subject, kind, payload type
// and payload), and how to sign it when it is missing.
type wanted struct {
	attest.Signed
	store attest.Store
	key   sentKey // what the sentSet knows it by
	sign  func() (*attest.Signed, error)
}

// add stores what w.sign makes of the payload unless entries hold it,
// signed as this run's policy requires: present (written, when this run
// sent it before), or written.
func (r *run) add(ctx context.Context, w wanted, entries []*attest.Entry, sent *sentSet) (Outcome, error) {
	found, err := r.verified(ctx, w, entries)
	if err != nil || found {
		return sent.present(w.key), err
	}
	signed, err := w.sign()
	if err != nil {
		return Failed, err
	}
	sent.add(w.key)
	if err := w.store.Add(ctx, r.opts.Client, signed); err != nil {
		return Failed, err
	}
	return Written, nil
}

// signPayload signs u, a payload not signed yet (its subject, kind,
// payload type and payload), and has the witnesses add their evidence.
func (r *run) signPayload(ctx context.Context, u attest.Signed, k attest.Keeps) (*attest.Signed, error) {
	sig, m, err := r.opts.Signer.Sign(ctx, u.Message())
	if err != nil {
		return nil, err
	}
	r.signatures.Add(1)
	s := &u
	s.Signature, s.Material = sig, m
	for _, w := range r.opts.Witnesses {
		if err := w.Witness(ctx, s, k); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// verified looks among entries for one with w's payload (an attestation:
// the same statement, whenever made) that passes the policy this run's
// signer and witnesses imply in w's layout, verified as Verify verifies
// it: signed by this identity, with the evidence the witnesses add where
// the layout keeps it. Entries whose listing shows another payload are
// not read.
func (r *run) verified(ctx context.Context, w wanted, entries []*attest.Entry) (bool, error) {
	digest := statement.Digest(w.Payload)
	stmt, _ := statement.StatementDigest(w.Payload)
	for _, e := range entries {
		if e.PayloadDigest != (v1.Hash{}) && e.PayloadDigest != digest || e.Statement != (v1.Hash{}) && e.Statement != stmt {
			continue
		}
		s, err := e.Load(ctx, w.Payload)
		if errors.Is(err, attest.ErrForeign) {
			continue
		}
		if err != nil {
			return false, err
		}
		if s.Kind != w.Kind || s.PayloadType != w.PayloadType || !samePayload(s.Payload, w.Payload, digest, stmt) {
			continue
		}
		c, err := r.checker(w.store)
		if err != nil {
			return false, err
		}
		if _, err := c.Verify(ctx, w.store, w.Subject, s); err == nil {
			return true, nil
		}
	}
	return false, nil
}

// checker verifies what a node carries in store's layout against the trust this
// run implies there: the signer's (its key, or its identity and the
// authorities it chains to) and what each witness requires. The trusted
// material is asked for once, when a node first carries a payload the run
// would write: a run on an unsigned tree never needs it.
func (r *run) checker(store attest.Store) (*attest.Verifier, error) {
	return r.checkers.do(store.Layout(), func() (*attest.Verifier, error) {
		p := r.opts.Signer.Trust()
		p.IgnoreTlog = true
		for _, w := range r.opts.Witnesses {
			w.Require(&p, store.Keeps())
		}
		if r.opts.TrustedMaterial != nil {
			tm, err := r.opts.TrustedMaterial()
			if err != nil {
				return nil, fmt.Errorf("the trusted root to verify what the node carries: %w", err)
			}
			p.TrustedMaterial = tm
		}
		if (!p.IgnoreTlog || p.UseSignedTimestamps) && p.TrustedMaterial == nil {
			return nil, errors.New("attest: Sign with witnesses needs TrustedMaterial, to verify the evidence a node carries")
		}
		return attest.NewVerifier(p)
	})
}

func samePayload(got, want []byte, digest, stmt v1.Hash) bool {
	if statement.Digest(got) == digest {
		return true
	}
	h, err := statement.StatementDigest(got)
	return err == nil && h == stmt
}

// attestations are a node's attestations in one repository: one of the
// run's predicate, or one for each source it propagates.
func (r *run) attestations(n *walk.Node, sub attest.Subject) []*lazyAttestation {
	if len(r.opts.Propagate) == 0 {
		return []*lazyAttestation{{run: r, sub: sub, make: func() ([]byte, error) {
			pred, err := r.opts.Predicates.For(n)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", attest.ErrPredicate, err)
			}
			return statement.Statement(sub.Digest(), r.opts.Predicates.Type(), pred, r.opts.Now())
		}}}
	}
	out := make([]*lazyAttestation, len(r.opts.Propagate))
	for i, src := range r.opts.Propagate {
		out[i] = &lazyAttestation{run: r, sub: sub, make: func() ([]byte, error) {
			return statement.PropagatedStatement(sub.Digest(), src.PredicateType, src.Predicate)
		}}
	}
	return out
}

// attached is what the run's Attached finds on n, none without it.
func (r *run) attached(ctx context.Context, n *walk.Node) ([]*Source, error) {
	if r.opts.Attached == nil {
		return nil, nil
	}
	return r.opts.Attached(ctx, n)
}

// attachedAttestations are the attestations of what a node's build
// attached to it, in one repository: each source's predicate, byte for
// byte, with the node alone as subject.
func (r *run) attachedAttestations(sub attest.Subject, sources []*Source) []*lazyAttestation {
	out := make([]*lazyAttestation, len(sources))
	for i, src := range sources {
		out[i] = &lazyAttestation{run: r, sub: sub, make: func() ([]byte, error) {
			return statement.PropagatedStatement(sub.Digest(), src.PredicateType, src.Predicate)
		}}
	}
	return out
}

// combine folds one attestation's outcome into a placement's: failed if
// any failed, written if any was written, else present.
func combine(acc, o Outcome, first bool) Outcome {
	switch {
	case first || o == Failed:
		return o
	case acc == Failed:
		return acc
	case o == Written:
		return o
	}
	return acc
}

// lazyAttestation is a node's attestation in one repository: its statement
// made once, and signed once for every store that lacks it, with the
// evidence any of the run's stores keeps.
type lazyAttestation struct {
	run  *run
	sub  attest.Subject
	make func() ([]byte, error)

	stmtOnce sync.Once
	stmt     []byte
	stmtErr  error

	mu  sync.Mutex
	sig *attest.Signed
}

func (a *lazyAttestation) statement() ([]byte, error) {
	a.stmtOnce.Do(func() { a.stmt, a.stmtErr = a.make() })
	return a.stmt, a.stmtErr
}

func (a *lazyAttestation) signed(ctx context.Context) (*attest.Signed, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sig != nil {
		return a.sig, nil
	}
	stmt, err := a.statement()
	if err != nil {
		return nil, err
	}
	s, err := a.run.signPayload(ctx, attest.Signed{Subject: a.sub, Kind: attest.KindAttestation, PayloadType: attest.PayloadInToto, Payload: stmt}, a.run.keeps)
	if err == nil {
		a.sig = s
	}
	return s, err
}

// sentSet remembers, across the attempts at one node, what was sent to
// the registry, so that finding it later reads as written by this run.
type sentSet struct {
	mu sync.Mutex
	m  map[sentKey]bool
}

type sentKey struct {
	layout attest.Layout
	repo   string
	kind   attest.Kind
	what   string // the statement, for attestations
}

func (s *sentSet) add(k sentKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[sentKey]bool{}
	}
	s.m[k] = true
}

// present is the outcome of finding k there: written when this run sent it.
func (s *sentSet) present(k sentKey) Outcome {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[k] {
		return Written
	}
	return Present
}

// flights runs work once per key among concurrent callers: a later caller
// waits for the first. Success is kept, so later callers learn that the
// work is done without redoing it; a failure is not, so they try again.
type flights struct {
	mu   sync.Mutex
	m    map[string]chan struct{}
	done map[string]bool
}

// do runs fn for key unless it ran or runs. first says whether this call
// ran it; then out and err are fn's.
func (f *flights) do(key string, fn func() (Outcome, error)) (out Outcome, first bool, err error) {
	for {
		f.mu.Lock()
		if f.m == nil {
			f.m, f.done = map[string]chan struct{}{}, map[string]bool{}
		}
		if f.done[key] {
			f.mu.Unlock()
			return Present, false, nil
		}
		wait, running := f.m[key]
		if !running {
			wait = make(chan struct{})
			f.m[key] = wait
			f.mu.Unlock()
			out, err = fn()
			f.mu.Lock()
			delete(f.m, key)
			f.done[key] = err == nil
			f.mu.Unlock()
			close(wait)
			return out, true, err
		}
		f.mu.Unlock()
		<-wait // then look again: done, or failed and free to retry
	}
}

// onceMap computes a value once per key. A failure is shared by the calls
// that waited for it and then forgotten: the next call, a node's retry,
// computes it again.
type onceMap[K comparable, V any] struct {
	mu sync.Mutex
	m  map[K]*onceEntry[V]
}

type onceEntry[V any] struct {
	once sync.Once
	v    V
	err  error
}

func (o *onceMap[K, V]) do(k K, fn func() (V, error)) (V, error) {
	o.mu.Lock()
	if o.m == nil {
		o.m = map[K]*onceEntry[V]{}
	}
	e, ok := o.m[k]
	if !ok {
		e = &onceEntry[V]{}
		o.m[k] = e
	}
	o.mu.Unlock()
	e.once.Do(func() {
		e.v, e.err = fn()
		if e.err != nil {
			o.mu.Lock()
			if o.m[k] == e {
				delete(o.m, k)
			}
			o.mu.Unlock()
		}
	})
	return e.v, e.err
}

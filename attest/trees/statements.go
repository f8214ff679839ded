package trees

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nestattest/nestattest/attest"
	"github.com/nestattest/nestattest/attest/statement"
	"github.com/nestattest/nestattest/internal/pool"
	"github.com/nestattest/nestattest/walk"
)

// Statements says what one signed statement covers.
type Statements string

// The statement modes.
const (
	// StatementsNode gives every node its own signatures and statements,
	// as cosign signs one image at a time.
	StatementsNode Statements = "node"
	// StatementsTree signs one statement for up to statement.MaxSubjects
	// nodes, its subjects the nodes, and stores it with each of them: one
	// signature, one transparency-log entry, one timestamp for them all.
	// A layout whose signature names one manifest (cosign's legacy .sig)
	// keeps its signatures per node.
	StatementsTree Statements = "tree"
)

// ParseStatements checks a statement mode's name.
func ParseStatements(s string) (Statements, error) {
	switch m := Statements(s); m {
	case StatementsNode, StatementsTree:
		return m, nil
	}
	return "", fmt.Errorf("%q: want %s or %s", s, StatementsNode, StatementsTree)
}

// pendingItem is one signature or attestation a node lacks in one place
// and store, to be covered by a tree statement.
type pendingItem struct {
	node  int // index in the run's nodes
	place int // index in the node's Places
	store attest.Store
	sub   attest.Subject
	group int // groupSignature, or the attestation's index
}

// groupSignature is the group of the signing statements.
const groupSignature = -1

// treeRun is the state of a Sign with StatementsTree beyond the run's.
type treeRun struct {
	*run
	// preds are the PredicateDigest each attestation group's statements
	// have, by attestation index.
	preds []v1.Hash
	// signed counts the statements signed.
	signed atomic.Int32
	// predicates keeps the PredicateDigest of each payload met, by its
	// digest: a tree statement is parsed once, not once a node it names.
	predicateDigests sync.Map
}

// predicateOf is statement.PredicateDigest of payload, computed once a
// payload.
func (t *treeRun) predicateOf(payload []byte) (v1.Hash, error) {
	k := statement.Digest(payload)
	if d, ok := t.predicateDigests.Load(k); ok {
		return d.(v1.Hash), nil
	}
	d, err := statement.PredicateDigest(payload)
	if err == nil {
		t.predicateDigests.Store(k, d)
	}
	return d, err
}

// signTree signs nodes with tree statements: first every node is read, its
// per-node signatures (cosign's .sig) checked and written as Sign writes
// them, and what else it lacks collected; then what is missing is covered
// by statements of at most MaxSubjects subjects each, each signed once and
// stored with every node it names.
func (r *run) signTree(ctx context.Context, nodes []*walk.Node) (*Report, error) {
	t := &treeRun{run: r}
	if err := t.predicates(); err != nil {
		return nil, err
	}
	rep := &Report{Results: make([]NodeResult, len(nodes))}
	pending := make([][]pendingItem, len(nodes))
	var unreachable atomic.Pointer[attest.UnreachableError]
	forEachNode(nodes, r.opts.Jobs, func(i int) {
		if ctx.Err() != nil || unreachable.Load() != nil {
			rep.Results[i] = NodeResult{Node: nodes[i], pending: true}
			return
		}
		rep.Results[i], pending[i] = t.survey(ctx, i, nodes[i])
		var u *attest.UnreachableError
		if errors.As(rep.Results[i].Err, &u) {
			unreachable.CompareAndSwap(nil, u)
		}
	})
	if ctx.Err() == nil && unreachable.Load() == nil {
		t.cover(ctx, rep, pending, &unreachable)
	}
	rep.Statements = int(t.signed.Load())
	for i := range rep.Results {
		if rep.Results[i].Node == nil {
			rep.Results[i] = NodeResult{Node: nodes[i], pending: true}
		}
		if r.opts.Progress != nil {
			r.opts.Progress(rep.Results[i])
		}
	}
	return r.finish(ctx, rep, unreachable.Load())
}

// predicates makes each attestation group's predicate once, to tell a
// statement that covers a node from one that says something else.
func (t *treeRun) predicates() error {
	t.preds = make([]v1.Hash, len(t.groups()))
	for g := range t.preds {
		stmt, err := t.statementOf(g, []name.Digest{t.root.Digest()})
		if err != nil {
			return err
		}
		if t.preds[g], err = statement.PredicateDigest(stmt); err != nil {
			return err
		}
	}
	return nil
}

// groups are the run's attestation groups: its predicate, or one per
// source it propagates.
func (t *treeRun) groups() []int {
	n := 1
	if len(t.opts.Propagate) > 0 {
		n = len(t.opts.Propagate)
	}
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// statementOf is the statement of group g (groupSignature, or an
// attestation's index) whose subjects are refs.
func (t *treeRun) statementOf(g int, refs []name.Digest) ([]byte, error) {
	switch {
	case g == groupSignature:
		return statement.SignStatementOf(refs, t.annotations)
	case len(t.opts.Propagate) > 0:
		src := t.opts.Propagate[g]
		return statement.PropagatedStatementOf(refs, src.PredicateType, src.Predicate)
	}
	pred, err := t.opts.Predicates.ForTree(t.root)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", attest.ErrPredicate, err)
	}
	return statement.StatementOf(refs, t.opts.Predicates.Type(), pred, t.opts.Now())
}

// survey reads one node in every place and store: a per-node signature it
// lacks is written as Sign writes it; a statement it lacks is pending.
func (t *treeRun) survey(ctx context.Context, i int, n *walk.Node) (NodeResult, []pendingItem) {
	var (
		res  NodeResult
		pend []pendingItem
	)
	for attempt := 1; ; attempt++ {
		res, pend = t.surveyOnce(ctx, i, n)
		switch {
		case res.Err != nil && interrupted(ctx, res.Err):
			return NodeResult{Node: n, Places: res.Places, pending: true}, nil
		case res.Err == nil || attempt == nodeAttempts || !transient(res.Err):
			return res, pend
		}
	}
}

func (t *treeRun) surveyOnce(ctx context.Context, i int, n *walk.Node) (NodeResult, []pendingItem) {
	res := NodeResult{Node: n}
	var pend []pendingItem
	repos, err := t.places(ctx, n)
	if err == nil {
		res.Attached, err = t.attached(ctx, n)
	}
	if err != nil {
		res.Err = walk.Errorf("sign", n, err)
		return res, nil
	}
	sent := &sentSet{}
	for _, repo := range repos {
		sub := attest.Subject{Repository: repo, Descriptor: v1.Descriptor{
			MediaType: n.Descriptor.MediaType, Digest: n.Descriptor.Digest, Size: n.Descriptor.Size,
		}}
		for _, store := range t.opts.Stores {
			p := Placement{Repository: repo.Name(), Layout: store.Layout(), Signature: Failed, Attestation: Failed}
			place := len(res.Places)
			if t.opts.AttestOnly {
				p.Signature = ""
			}
			entries, err := store.List(ctx, t.opts.Client, sub)
			if err == nil && !t.opts.AttestOnly {
				p.Signature, err = t.treeSignature(ctx, store, sub, entries, sent)
			}
			if err == nil && p.Signature == Pending {
				pend = append(pend, pendingItem{node: i, place: place, store: store, sub: sub, group: groupSignature})
			}
			p.Attestation = Present
			for g := range t.preds {
				if err != nil {
					p.Attestation = Failed
					break
				}
				var covered bool
				if covered, err = t.covered(ctx, store, sub, entries, g); err == nil && !covered {
					p.Attestation = Pending
					pend = append(pend, pendingItem{node: i, place: place, store: store, sub: sub, group: g})
				}
			}
			// What the node's build attached is about the node alone: its
			// statements are the node's own, written now as Sign writes them.
			for _, att := range t.attachedAttestations(sub, res.Attached) {
				if err != nil {
					p.Attestation = Failed
					break
				}
				var o Outcome
				o, err = t.attestation(ctx, store, att, entries, sent)
				p.Attestation = fold(p.Attestation, o)
			}
			res.Places = append(res.Places, p)
			if err != nil {
				res.Err = walk.Errorf("sign", n, err)
				return res, nil
			}
		}
	}
	return res, pend
}

// treeSignature checks sub's signature in store: a layout whose signature
// names one manifest gets it per node, as Sign writes it; in one whose
// signature is a statement, a statement that covers sub is present, and
// its lack is pending.
func (t *treeRun) treeSignature(ctx context.Context, store attest.Store, sub attest.Subject, entries []*attest.Entry, sent *sentSet) (Outcome, error) {
	ptype, _, err := store.SignaturePayload(sub, t.annotations)
	if err != nil {
		return Failed, err
	}
	if ptype == attest.PayloadSimpleSigning {
		return t.signature(ctx, store, sub, entries, sent)
	}
	covered, err := t.covered(ctx, store, sub, entries, groupSignature)
	if err != nil || covered {
		return Present, err
	}
	return Pending, nil
}

// covered reports whether entries hold a statement of group g that
// covers sub and passes this run's trust in store's layout: it names
// sub's digest, says what this run's statement says (the same predicate,
// whenever made; for a signature, sub's repository and this run's
// annotations), and verifies as Verify verifies it.
func (t *treeRun) covered(ctx context.Context, store attest.Store, sub attest.Subject, entries []*attest.Entry, g int) (bool, error) {
	kind := attest.KindAttestation
	if g == groupSignature {
		kind = attest.KindSignature
	}
	for _, e := range ofKind(entries, kind) {
		if g != groupSignature && (e.PredicateType != "" && e.PredicateType != t.uriOf(g) || e.Predicate != (v1.Hash{}) && e.Predicate != t.preds[g]) {
			continue
		}
		s, err := e.Load(ctx)
		if errors.Is(err, attest.ErrForeign) {
			continue
		}
		if err != nil {
			return false, err
		}
		if s.Kind != kind || !s.DSSE() {
			continue
		}
		if g != groupSignature {
			if d, err := t.predicateOf(s.Payload); err != nil || d != t.preds[g] {
				continue
			}
		}
		c, err := t.checker(store)
		if err != nil {
			return false, err
		}
		claim, err := c.Verify(ctx, store, sub, s)
		if err != nil {
			continue
		}
		if g == groupSignature && (claim.Repository != sub.Repository.Name() || !hasAnnotations(claim.Annotations, t.annotations)) {
			continue
		}
		return true, nil
	}
	return false, nil
}

// uriOf is the predicate type URI of attestation group g.
func (t *treeRun) uriOf(g int) string {
	if len(t.opts.Propagate) > 0 {
		return t.opts.Propagate[g].PredicateType
	}
	return t.uri
}

// cover signs a statement for each chunk of what is pending, group by
// group, and stores it where each of its nodes lacks it.
func (t *treeRun) cover(ctx context.Context, rep *Report, pending [][]pendingItem, unreachable *atomic.Pointer[attest.UnreachableError]) {
	byGroup := map[int][]pendingItem{}
	var order []int
	for i, items := range pending {
		if rep.Results[i].Err != nil || rep.Results[i].pending {
			continue
		}
		for _, it := range items {
			if _, ok := byGroup[it.group]; !ok {
				order = append(order, it.group)
			}
			byGroup[it.group] = append(byGroup[it.group], it)
		}
	}
	var mu sync.Mutex
	fail := func(it pendingItem, err error) {
		mu.Lock()
		defer mu.Unlock()
		res := &rep.Results[it.node]
		switch {
		case interrupted(ctx, err):
			res.pending = true
		case res.Err == nil:
			res.Err = walk.Errorf("sign", res.Node, err)
		}
		var u *attest.UnreachableError
		if errors.As(err, &u) {
			unreachable.CompareAndSwap(nil, u)
		}
		t.set(res, it, Failed)
	}
	var signed []signedChunk
	for _, g := range order {
		for _, chunk := range t.chunks(byGroup[g]) {
			if ctx.Err() != nil || unreachable.Load() != nil {
				for _, it := range chunk {
					mu.Lock()
					rep.Results[it.node].pending = true
					mu.Unlock()
				}
				continue
			}
			s, err := t.signChunk(ctx, g, chunk)
			if err != nil {
				for _, it := range chunk {
					fail(it, err)
				}
				continue
			}
			signed = append(signed, signedChunk{s, chunk})
		}
	}
	t.store(ctx, rep, signed, &mu, fail)
}

// signedChunk is a signed statement and the items it covers.
type signedChunk struct {
	signed *attest.Signed
	items  []pendingItem
}

// chunks splits items into balanced chunks whose statements name at most
// MaxSubjects subjects: each distinct repository@digest is one subject,
// however many nodes and stores share it.
func (t *treeRun) chunks(items []pendingItem) [][]pendingItem {
	var subjects []string
	bySubject := map[string][]pendingItem{}
	for _, it := range items {
		k := it.sub.Digest().String()
		if _, ok := bySubject[k]; !ok {
			subjects = append(subjects, k)
		}
		bySubject[k] = append(bySubject[k], it)
	}
	limit := t.opts.MaxSubjects
	if limit <= 0 || limit > statement.MaxSubjects {
		limit = statement.MaxSubjects
	}
	n := (len(subjects) + limit - 1) / limit
	var out [][]pendingItem
	for c := range n {
		lo, hi := c*len(subjects)/n, (c+1)*len(subjects)/n
		var chunk []pendingItem
		for _, k := range subjects[lo:hi] {
			chunk = append(chunk, bySubject[k]...)
		}
		out = append(out, chunk)
	}
	return out
}

// signChunk makes and signs the statement of group g whose subjects are
// the chunk's, with the evidence any store of the run keeps.
func (t *treeRun) signChunk(ctx context.Context, g int, chunk []pendingItem) (*attest.Signed, error) {
	seen := map[string]bool{}
	var refs []name.Digest
	for _, it := range chunk {
		ref := it.sub.Digest()
		if !seen[ref.String()] {
			seen[ref.String()] = true
			refs = append(refs, ref)
		}
	}
	stmt, err := t.statementOf(g, refs)
	if err != nil {
		return nil, err
	}
	kind := attest.KindAttestation
	if g == groupSignature {
		kind = attest.KindSignature
	}
	s, err := t.signPayload(ctx, attest.Signed{Subject: chunk[0].sub, Kind: kind, PayloadType: attest.PayloadInToto, Payload: stmt}, t.keeps)
	if err == nil {
		t.signed.Add(1)
	}
	return s, err
}

// store writes the signed statements where each of their items lacks
// them: once per store, repository and digest, every statement a subject
// lacks in one Add (the bundle layout lists them in one update); nodes
// that share a subject find them present.
func (t *treeRun) store(ctx context.Context, rep *Report, chunks []signedChunk, mu *sync.Mutex, fail func(pendingItem, error)) {
	type write struct {
		store  attest.Store
		sub    attest.Subject
		signed []*attest.Signed
		items  [][]pendingItem // per statement, the items it covers here
	}
	var writes []*write
	byKey := map[string]*write{}
	for _, c := range chunks {
		for _, it := range c.items {
			k := string(it.store.Layout()) + " " + it.sub.Digest().String()
			w, ok := byKey[k]
			if !ok {
				w = &write{store: it.store, sub: it.sub}
				byKey[k] = w
				writes = append(writes, w)
			}
			if n := len(w.signed); n == 0 || w.signed[n-1] != c.signed {
				w.signed = append(w.signed, c.signed)
				w.items = append(w.items, nil)
			}
			w.items[len(w.items)-1] = append(w.items[len(w.items)-1], it)
		}
	}
	order := byTurns(len(writes), func(i int) string { return writes[i].sub.Repository.Name() })
	pool.ForEach(len(order), t.opts.Jobs, func(k int) {
		w := writes[order[k]]
		signed := make([]*attest.Signed, len(w.signed))
		for j, s := range w.signed {
			one := *s
			one.Subject = w.sub
			signed[j] = &one
		}
		var err error
		for attempt := 1; attempt <= nodeAttempts; attempt++ {
			if err = w.store.Add(ctx, t.opts.Client, signed...); err == nil || !transient(err) || interrupted(ctx, err) {
				break
			}
		}
		for _, items := range w.items {
			for j, it := range items {
				if err != nil {
					fail(it, err)
					continue
				}
				out := Written
				if j > 0 {
					out = Present
				}
				mu.Lock()
				t.set(&rep.Results[it.node], it, out)
				mu.Unlock()
			}
		}
	})
}

// fold folds the outcome of a node's own attestation into a placement's
// whose tree statements may be pending: failed if either failed, written
// if either was written (cover keeps it written), else what is pending
// stays pending.
func fold(acc, o Outcome) Outcome {
	switch {
	case acc == Failed || o == Failed:
		return Failed
	case acc == Written || o == Written:
		return Written
	}
	return acc
}

// set records the outcome of item it in res.
func (t *treeRun) set(res *NodeResult, it pendingItem, o Outcome) {
	p := &res.Places[it.place]
	if it.group == groupSignature {
		p.Signature = o
		return
	}
	switch {
	case p.Attestation == Failed || o == Failed:
		p.Attestation = Failed
	case p.Attestation == Written || o == Written:
		p.Attestation = Written
	case p.Attestation == Pending:
		p.Attestation = o
	}
}

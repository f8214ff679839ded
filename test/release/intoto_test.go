package release

import (
	"testing"

	itaprov "github.com/in-toto/attestation/go/predicates/provenance/v1"
	ita "github.com/in-toto/attestation/go/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// validStatement parses an in-toto statement strictly (unknown fields
// refused) into in-toto/attestation's protobuf types, its predicate into
// SLSA v1 provenance, and runs their Validate.
func validStatement(t *testing.T, raw []byte) (*ita.Statement, *itaprov.Provenance) {
	t.Helper()
	strict := protojson.UnmarshalOptions{}
	var st ita.Statement
	if err := strict.Unmarshal(raw, &st); err != nil {
		t.Fatalf("statement does not parse strictly: %v\n%s", err, raw)
	}
	if err := st.Validate(); err != nil {
		t.Fatalf("statement Validate: %v\n%s", err, raw)
	}
	pred, err := protojson.Marshal(st.GetPredicate())
	if err != nil {
		t.Fatal(err)
	}
	var prov itaprov.Provenance
	if err := strict.Unmarshal(pred, &prov); err != nil {
		t.Fatalf("predicate does not parse strictly: %v\n%s", err, pred)
	}
	if err := prov.Validate(); err != nil {
		t.Fatalf("provenance Validate: %v\n%s", err, pred)
	}
	return &st, &prov
}

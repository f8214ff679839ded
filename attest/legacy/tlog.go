package legacy

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"

	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
)

// rekorBundle is the Rekor v1 bundle cosign keeps in a legacy layer's
// dev.sigstore.cosign/bundle annotation.
type rekorBundle struct {
	SignedEntryTimestamp []byte
	Payload              struct {
		Body           string `json:"body"`
		IntegratedTime int64  `json:"integratedTime"`
		LogIndex       int64  `json:"logIndex"`
		LogID          string `json:"logID"`
	}
}

// rekorBundleOf is the legacy annotation for a Rekor v1 entry, which has a
// signed entry timestamp; Rekor v2 entries have none and are kept in
// bundles only.
func rekorBundleOf(e *protorekor.TransparencyLogEntry) ([]byte, bool) {
	if e.GetInclusionPromise() == nil || e.GetLogId() == nil {
		return nil, false
	}
	var b rekorBundle
	b.SignedEntryTimestamp = e.GetInclusionPromise().GetSignedEntryTimestamp()
	b.Payload.Body = base64.StdEncoding.EncodeToString(e.GetCanonicalizedBody())
	b.Payload.IntegratedTime = e.GetIntegratedTime()
	b.Payload.LogIndex = e.GetLogIndex()
	b.Payload.LogID = hex.EncodeToString(e.GetLogId().GetKeyId())
	raw, err := json.Marshal(b)
	return raw, err == nil
}

// tlogFromRekorBundle reads a legacy Rekor v1 bundle annotation.
func tlogFromRekorBundle(raw []byte) (*protorekor.TransparencyLogEntry, error) {
	var b rekorBundle
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, err
	}
	body, err := base64.StdEncoding.DecodeString(b.Payload.Body)
	if err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	logID, err := hex.DecodeString(b.Payload.LogID)
	if err != nil {
		return nil, fmt.Errorf("log id: %w", err)
	}
	var kind struct {
		Kind       string `json:"kind"`
		APIVersion string `json:"apiVersion"`
	}
	if err := json.Unmarshal(body, &kind); err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	return &protorekor.TransparencyLogEntry{
		LogIndex:          b.Payload.LogIndex,
		LogId:             &protocommon.LogId{KeyId: logID},
		KindVersion:       &protorekor.KindVersion{Kind: kind.Kind, Version: kind.APIVersion},
		IntegratedTime:    b.Payload.IntegratedTime,
		InclusionPromise:  &protorekor.InclusionPromise{SignedEntryTimestamp: b.SignedEntryTimestamp},
		CanonicalizedBody: body,
	}, nil
}

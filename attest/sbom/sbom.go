package sbom

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strings"

	"github.com/in-toto/in-toto-golang/in_toto"
)

// Format is the format of an SBOM document nestattest attests, named as
// `cosign attest --type` names it.
type Format string

// The formats attested.
const (
	// SPDXJSON is an SPDX document in JSON: predicate type
	// https://spdx.dev/Document.
	SPDXJSON Format = "spdxjson"
	// CycloneDXJSON is a CycloneDX BOM in JSON: predicate type
	// https://cyclonedx.org/bom.
	CycloneDXJSON Format = "cyclonedx"
)

// PredicateType is the in-toto predicate type an SBOM of format f is
// attested with, as cosign attest --type f gives it.
func (f Format) PredicateType() string {
	switch f {
	case SPDXJSON:
		return in_toto.PredicateSPDX
	case CycloneDXJSON:
		return in_toto.PredicateCycloneDX
	}
	return ""
}

// Types are the cosign type names of the SBOM formats, and their
// predicate type URIs: what verify treats as an SBOM type.
var Types = map[string]Format{
	"spdx": SPDXJSON, "spdxjson": SPDXJSON, in_toto.PredicateSPDX: SPDXJSON,
	"cyclonedx": CycloneDXJSON, in_toto.PredicateCycloneDX: CycloneDXJSON,
}

// ErrFormat: an attached document is not an SBOM in a format attested
// here, or not what its media type says.
var ErrFormat = errors.New("not an SBOM nestattest attests")

// MaxBytes bounds an SBOM document read: its statement, base64-encoded in
// a DSSE envelope, must stay under the 16 MiB a store reads back
// (attest.MaxPayloadBytes).
const MaxBytes = 10 << 20

// mediaTypes are the media types SBOMs are attached with, by format; ""
// for formats that are SBOMs but are not attested (not JSON, or not a
// predicate type of in-toto's).
var mediaTypes = map[string]Format{
	"text/spdx+json":                 SPDXJSON, // cosign attach sbom --input-format json, ko
	"application/spdx+json":          SPDXJSON, // IANA's, oras attach --artifact-type
	"application/vnd.spdx+json":      SPDXJSON,
	"application/vnd.cyclonedx+json": CycloneDXJSON,
	"text/spdx":                      "", // SPDX tag-value
	"application/vnd.cyclonedx+xml":  "",
	"application/vnd.cyclonedx":      "",
	"application/vnd.syft+json":      "",
}

// IsSBOMMediaType reports whether mt (parameters ignored) is a media type
// SBOMs are attached with, attested here or not.
func IsSBOMMediaType(mt string) bool {
	_, ok := mediaTypes[baseType(mt)]
	return ok
}

func baseType(mt string) string {
	if t, _, err := mime.ParseMediaType(mt); err == nil {
		return t
	}
	return strings.ToLower(strings.TrimSpace(mt))
}

// Detect tells the format of an SBOM document attached with media type
// mt, checking that the content is what mt says: a JSON object that is an
// SPDX document (spdxVersion, or an SPDX 3 @context) or a CycloneDX BOM
// (bomFormat CycloneDX). It fails with ErrFormat, saying why, for a media
// type not attested here and for content that is not what it claims.
func Detect(mt string, raw []byte) (Format, error) {
	f, ok := mediaTypes[baseType(mt)]
	switch {
	case !ok:
		return "", fmt.Errorf("%w: media type %q is not an SBOM's", ErrFormat, mt)
	case f == "":
		return "", fmt.Errorf("%w: %s is not JSON SPDX or CycloneDX, which an in-toto predicate must be", ErrFormat, mt)
	}
	var doc struct {
		SPDXVersion any             `json:"spdxVersion"`
		Context     json.RawMessage `json:"@context"`
		BOMFormat   any             `json:"bomFormat"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&doc); err != nil || !json.Valid(raw) {
		return "", fmt.Errorf("%w: its %s content is not a JSON object", ErrFormat, mt)
	}
	switch f {
	case SPDXJSON:
		if v, ok := doc.SPDXVersion.(string); ok && strings.HasPrefix(v, "SPDX-") || bytes.Contains(doc.Context, []byte("spdx.org/rdf/3")) {
			return f, nil
		}
		return "", fmt.Errorf("%w: %s content without spdxVersion \"SPDX-…\" (nor an SPDX 3 @context)", ErrFormat, mt)
	default:
		if doc.BOMFormat == "CycloneDX" {
			return f, nil
		}
		return "", fmt.Errorf("%w: %s content without bomFormat \"CycloneDX\"", ErrFormat, mt)
	}
}

package attesttest

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nestattest/nestattest/registry"
)

// SPDX is a small SPDX 2.3 JSON document, pretty-printed with a final
// newline as ko writes one: its bytes must survive attestation unchanged.
const SPDX = "{\n  \"spdxVersion\": \"SPDX-2.3\",\n  \"SPDXID\": \"SPDXRef-DOCUMENT\",\n  \"name\": \"sbom\",\n  \"dataLicense\": \"CC0-1.0\"\n}\n"

// CycloneDX is a small CycloneDX 1.5 JSON BOM.
const CycloneDX = `{"bomFormat":"CycloneDX","specVersion":"1.5","version":1}`

// AttachSBOMTag attaches doc as the SBOM of the manifest d in repo as
// `cosign attach sbom` and ko do: <repo>:sha256-<hex>.sbom, a manifest
// whose one layer is doc, of media type mt.
func AttachSBOMTag(t testing.TB, c *registry.Client, repo name.Repository, d v1.Hash, mt, doc string) {
	t.Helper()
	ctx := context.Background()
	raw := manifest(t, c, repo, "", mt, doc, nil)
	tag := repo.Tag(d.Algorithm + "-" + d.Hex + ".sbom")
	if _, err := c.PutManifest(ctx, tag, types.OCIManifestSchema1, raw); err != nil {
		t.Fatal(err)
	}
}

// AttachSBOMReferrer attaches doc to the manifest d in repo as `oras
// attach --artifact-type at` does: an OCI 1.1 referrer of artifact type
// at whose one layer, of a generic media type, is doc.
func AttachSBOMReferrer(t testing.TB, c *registry.Client, repo name.Repository, d v1.Descriptor, at, doc string) {
	t.Helper()
	raw := manifest(t, c, repo, at, "application/vnd.oci.image.layer.v1.tar", doc, &d)
	h, size, err := v1.SHA256(bytesReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	desc := v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: h, Size: size, ArtifactType: at}
	if err := c.PutReferrers(context.Background(), repo, d.Digest, registry.Referrer{Descriptor: desc, Raw: raw}); err != nil {
		t.Fatal(err)
	}
}

func manifest(t testing.TB, c *registry.Client, repo name.Repository, at, mt, doc string, subject *v1.Descriptor) []byte {
	t.Helper()
	ctx := context.Background()
	empty := []byte("{}")
	cfg, err := c.Upload(ctx, repo, empty)
	if err != nil {
		t.Fatal(err)
	}
	layer, err := c.Upload(ctx, repo, []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{
		"schemaVersion": 2, "mediaType": types.OCIManifestSchema1,
		"config": v1.Descriptor{MediaType: "application/vnd.oci.empty.v1+json", Digest: cfg, Size: int64(len(empty))},
		"layers": []v1.Descriptor{{MediaType: types.MediaType(mt), Digest: layer, Size: int64(len(doc))}},
	}
	if at != "" {
		m["artifactType"] = at
	}
	if subject != nil {
		m["subject"] = v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

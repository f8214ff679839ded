package sbom_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nestattest/nestattest/attest/internal/attesttest"
	"github.com/nestattest/nestattest/attest/sbom"
	"github.com/nestattest/nestattest/internal/sample"
	"github.com/nestattest/nestattest/registry"
)

func TestDetect(t *testing.T) {
	for _, tc := range []struct {
		mt, doc string
		want    sbom.Format
	}{
		{"text/spdx+json", attesttest.SPDX, sbom.SPDXJSON},
		{"application/spdx+json", `{"spdxVersion":"SPDX-2.2"}`, sbom.SPDXJSON},
		{"application/spdx+json", `{"@context":"https://spdx.org/rdf/3.0.1/spdx-context.jsonld"}`, sbom.SPDXJSON},
		{"application/vnd.cyclonedx+json; version=1.5", attesttest.CycloneDX, sbom.CycloneDXJSON},
		{"text/spdx", "SPDXVersion: SPDX-2.3", ""},
		{"application/spdx+json", attesttest.CycloneDX, ""},
		{"application/vnd.cyclonedx+json", attesttest.SPDX, ""},
		{"application/spdx+json", `{"spdxVersion":"SPDX-2.3"} trailing`, ""},
		{"application/spdx+json", `[1]`, ""},
		{"application/json", `{"spdxVersion":"SPDX-2.3"}`, ""},
	} {
		got, err := sbom.Detect(tc.mt, []byte(tc.doc))
		if got != tc.want || (tc.want == "") != errors.Is(err, sbom.ErrFormat) {
			t.Errorf("Detect(%q, %.30q) = %q, %v; want %q", tc.mt, tc.doc, got, err, tc.want)
		}
	}
}

// TestFind: an SBOM in cosign's .sbom tag and one attached as a referrer
// are both found, byte for byte; a referrer of another kind is passed
// over; a document that is not what its media type says is skipped with
// why; a manifest with nothing attached has none.
func TestFind(t *testing.T) {
	for _, referrers := range []bool{true, false} {
		r := attesttest.NewRegistry(t, referrers)
		c := registry.NewClient(registry.Options{})
		ctx := context.Background()
		repo, err := name.NewRepository(r.Host + "/org/app")
		if err != nil {
			t.Fatal(err)
		}
		img, err := sample.Image("app", v1.Platform{OS: "linux", Architecture: "amd64"})
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(repo.Tag("latest"), img); err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		mt, _ := img.MediaType()
		size, _ := img.Size()
		desc := v1.Descriptor{MediaType: mt, Digest: d, Size: size}

		f, err := sbom.Find(ctx, c, repo, d)
		if err != nil || len(f.SBOMs)+len(f.Skipped) != 0 {
			t.Fatalf("nothing attached: %+v, %v", f, err)
		}
		attesttest.AttachSBOMTag(t, c, repo, d, "text/spdx+json", attesttest.SPDX)
		attesttest.AttachSBOMReferrer(t, c, repo, desc, "application/vnd.cyclonedx+json", attesttest.CycloneDX)
		attesttest.AttachSBOMReferrer(t, c, repo, desc, "application/vnd.example.other", `{}`)
		attesttest.AttachSBOMReferrer(t, c, repo, desc, "application/spdx+json", `{"not":"spdx"}`)
		f, err = sbom.Find(ctx, c, repo, d)
		if err != nil {
			t.Fatal(err)
		}
		if len(f.SBOMs) != 2 || f.SBOMs[0].Format != sbom.SPDXJSON || string(f.SBOMs[0].Raw) != attesttest.SPDX ||
			f.SBOMs[1].Format != sbom.CycloneDXJSON || string(f.SBOMs[1].Raw) != attesttest.CycloneDX {
			t.Fatalf("referrers API %v: found %+v skipped %+v", referrers, f.SBOMs, f.Skipped)
		}
		if f.SBOMs[0].Where != sbom.Tag(repo, d).String() {
			t.Errorf("where %q", f.SBOMs[0].Where)
		}
		if len(f.Skipped) != 1 || f.Skipped[0].MediaType != "application/spdx+json" {
			t.Errorf("skipped %+v", f.Skipped)
		}
	}
}

// FuzzDetect: whatever a registry serves as an SBOM, telling its format
// never panics, and a document it accepts is JSON, as a predicate must be.
func FuzzDetect(f *testing.F) {
	f.Add("text/spdx+json", []byte(attesttest.SPDX))
	f.Add("application/vnd.cyclonedx+json", []byte(attesttest.CycloneDX))
	f.Add("application/spdx+json; charset=utf-8", []byte(`{"spdxVersion":1}`))
	f.Add("text/spdx", []byte(`SPDXVersion: SPDX-2.3`))
	f.Fuzz(func(t *testing.T, mt string, raw []byte) {
		format, err := sbom.Detect(mt, raw)
		if err != nil {
			return
		}
		if format.PredicateType() == "" {
			t.Fatalf("Detect(%q) = %q, a format without a predicate type", mt, format)
		}
		if !json.Valid(raw) {
			t.Fatalf("Detect(%q) accepted %q, which is not JSON", mt, raw)
		}
	})
}

// FuzzParseManifest: whatever a registry serves as an SBOM's manifest,
// reading it never panics.
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"artifactType":"application/spdx+json","config":{},"layers":[{"mediaType":"text/spdx+json","digest":"sha256:00","size":2}],"subject":{"digest":"sha256:00"}}`))
	f.Add([]byte(`{"layers":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if m, err := sbom.ParseManifest(raw); err == nil && m == nil {
			t.Fatal("nil manifest without an error")
		}
	})
}

package walk

import (
	"errors"
	nreg "github.com/nestattest/nestattest/registry"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"
)

func TestDecode(t *testing.T) {
	img := `{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:` + strings.Repeat("a", 64) + `","size":2},"layers":[]}`
	for _, tc := range []struct {
		name, raw, contentType string
		kind                   Kind
		err                    error
	}{
		{"image by content type", img, string(types.OCIManifestSchema1), KindImage, nil},
		{"image inferred", img, "application/json", KindImage, nil},
		{"docker list", `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}`, "", KindIndex, nil},
		{"index inferred", `{"schemaVersion":2,"manifests":[]}`, "", KindIndex, nil},
		{"not json", `nope`, "", "", ErrInvalidManifest},
		{"trailing data", `{"manifests":[]} {}`, "", "", ErrInvalidManifest},
		{"schema1", `{"schemaVersion":1,"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws"}`, "", "", ErrInvalidManifest},
		{"no media type", `{}`, "", "", ErrInvalidManifest},
		{"index with layers", `{"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[],"layers":[]}`, "", "", ErrInvalidManifest},
		{"manifest without config", `{"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}`, "", "", ErrInvalidManifest},
		{"bad digest", `{"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"digest":"sha256:zz","size":1}]}`, "", "", ErrInvalidManifest},
		{"sha512 digest", `{"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"digest":"sha512:` + strings.Repeat("a", 128) + `","size":1}]}`, "", "", ErrInvalidManifest},
		{"negative size", `{"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"digest":"sha256:` + strings.Repeat("a", 64) + `","size":-1}]}`, "", "", ErrInvalidManifest},
		{"too large", strings.Repeat(" ", MaxManifestBytes+1), "", "", nreg.ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Decode([]byte(tc.raw), tc.contentType)
			if !errors.Is(err, tc.err) {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
			if err == nil && m.Kind() != tc.kind {
				t.Errorf("kind %s, want %s", m.Kind(), tc.kind)
			}
		})
	}
}

// FuzzDecode checks that Decode never panics, and that what it accepts is a
// supported kind whose descriptors all carry sha256 digests.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:`+strings.Repeat("a", 64)+`","size":3,"annotations":{"dev.nestattest.repository":"app1"}}]}`), "")
	f.Add([]byte(`{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:`+strings.Repeat("b", 64)+`","size":2},"layers":[],"subject":{"digest":"sha256:`+strings.Repeat("c", 64)+`","size":1}}`), string(types.OCIManifestSchema1))
	f.Add([]byte(`{"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":null}`), "")
	f.Add([]byte(`[]`), "application/json")
	f.Fuzz(func(t *testing.T, raw []byte, contentType string) {
		m, err := Decode(raw, contentType)
		if err != nil {
			if !errors.Is(err, ErrInvalidManifest) && !errors.Is(err, nreg.ErrTooLarge) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		if k := m.Kind(); k != KindIndex && k != KindImage && k != KindArtifact {
			t.Fatalf("kind %q", k)
		}
		for _, d := range m.Manifests {
			if d.Digest.Algorithm != "sha256" || len(d.Digest.Hex) != 64 || d.Size < 0 {
				t.Fatalf("accepted descriptor %+v", d)
			}
		}
		_ = m.IsSupplement()
	})
}

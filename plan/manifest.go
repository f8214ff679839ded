package plan

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// mediaTypeEmpty is OCI's empty descriptor, the config of an artifact.
const mediaTypeEmpty = "application/vnd.oci.empty.v1+json"

var emptyConfig = []byte("{}")

// Manifest is the plan artifact's manifest: the root, the shard and node
// counts, and a layer per shard.
type Manifest struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     types.MediaType   `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        v1.Descriptor     `json:"config"`
	Layers        []v1.Descriptor   `json:"layers"`
	Annotations   map[string]string `json:"annotations"`
}

// Encoded is a plan as it is pushed: the manifest and its blobs.
type Encoded struct {
	// Manifest is the manifest's bytes; Digest their digest.
	Manifest []byte
	Digest   v1.Hash
	// Blobs are the config and the shard documents, in the manifest's
	// order.
	Blobs [][]byte
}

// Encode makes the plan's manifest and blobs. The same plan always
// encodes to the same bytes.
func (p *Plan) Encode() (*Encoded, error) {
	enc := &Encoded{Blobs: [][]byte{emptyConfig}}
	m := Manifest{
		SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: ArtifactType,
		Config: v1.Descriptor{MediaType: mediaTypeEmpty, Digest: digestOf(emptyConfig), Size: int64(len(emptyConfig)), Data: emptyConfig},
		Annotations: map[string]string{
			AnnotationRoot:   p.Root.Repository + "@" + p.Root.Digest.String(),
			AnnotationShards: strconv.Itoa(p.Shards),
			AnnotationNodes:  strconv.Itoa(len(p.Entries)),
		},
	}
	for s := range p.Shards {
		doc := p.Shard(s)
		raw, err := json.Marshal(doc)
		if err != nil {
			return nil, err
		}
		if len(raw) > MaxShardBytes {
			return nil, fmt.Errorf("%w: shard %d is %d bytes, over %d; plan in more shards", ErrTooLarge, s, len(raw), MaxShardBytes)
		}
		enc.Blobs = append(enc.Blobs, raw)
		m.Layers = append(m.Layers, v1.Descriptor{
			MediaType: LayerMediaType, Digest: digestOf(raw), Size: int64(len(raw)),
			Annotations: map[string]string{AnnotationShard: strconv.Itoa(s), AnnotationNodes: strconv.Itoa(doc.Own())},
		})
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	enc.Manifest, enc.Digest = raw, digestOf(raw)
	return enc, nil
}

// Header is what a plan's manifest says.
type Header struct {
	// Root is the root the plan was made for.
	Root Root
	// Shards and Nodes are the plan's shard and node counts.
	Shards, Nodes int
	// Layers are the shard documents, Layers[s] shard s's.
	Layers []v1.Descriptor
}

// ParseManifest reads a plan's manifest.
func ParseManifest(raw []byte) (*Header, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotPlan, err)
	}
	if m.MediaType != types.OCIManifestSchema1 || m.ArtifactType != ArtifactType {
		return nil, fmt.Errorf("%w: media type %q, artifactType %q; want %s of %s", ErrNotPlan, m.MediaType, m.ArtifactType, types.OCIManifestSchema1, ArtifactType)
	}
	h := &Header{Layers: m.Layers}
	var err error
	if h.Root, err = parseRoot(m.Annotations[AnnotationRoot]); err != nil {
		return nil, err
	}
	if h.Shards, err = count(m.Annotations, AnnotationShards, 1, MaxShards); err != nil {
		return nil, err
	}
	if h.Nodes, err = count(m.Annotations, AnnotationNodes, h.Shards, 1<<31-1); err != nil {
		return nil, err
	}
	if len(m.Layers) != h.Shards {
		return nil, fmt.Errorf("%w: %d layers for %d shards", ErrInvalid, len(m.Layers), h.Shards)
	}
	for s, l := range m.Layers {
		if err := checkLayer(s, l); err != nil {
			return nil, err
		}
	}
	return h, nil
}

func checkLayer(s int, l v1.Descriptor) error {
	switch {
	case l.MediaType != LayerMediaType:
		return fmt.Errorf("%w: layer %d has media type %q, want %s", ErrInvalid, s, l.MediaType, LayerMediaType)
	case l.Annotations[AnnotationShard] != strconv.Itoa(s):
		return fmt.Errorf("%w: layer %d is annotated as shard %q", ErrInvalid, s, l.Annotations[AnnotationShard])
	case l.Digest.Algorithm != "sha256" || l.Size < 2 || l.Size > MaxShardBytes:
		return fmt.Errorf("%w: layer %d: digest %q, size %d", ErrInvalid, s, l.Digest, l.Size)
	}
	return nil
}

// parseRoot reads AnnotationRoot, repository@sha256:….
func parseRoot(s string) (Root, error) {
	i := strings.LastIndexByte(s, '@')
	if i <= 0 {
		return Root{}, fmt.Errorf("%w: %s %q is not repository@digest", ErrInvalid, AnnotationRoot, s)
	}
	h, err := v1.NewHash(s[i+1:])
	if err != nil || h.Algorithm != "sha256" {
		return Root{}, fmt.Errorf("%w: %s %q: not a sha256 digest", ErrInvalid, AnnotationRoot, s)
	}
	return Root{Repository: s[:i], Digest: h}, nil
}

// count reads a decimal annotation in lo…hi.
func count(a map[string]string, key string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(a[key])
	if err != nil || n < lo || n > hi || strconv.Itoa(n) != a[key] {
		return 0, fmt.Errorf("%w: %s %q; want %d to %d", ErrInvalid, key, a[key], lo, hi)
	}
	return n, nil
}

// Layer returns the descriptor of shard s's document.
func (h *Header) Layer(s int) (v1.Descriptor, error) {
	if s < 0 || s >= h.Shards {
		return v1.Descriptor{}, fmt.Errorf("%w: shard %d; the plan has shards 0 to %d", ErrShardRange, s, h.Shards-1)
	}
	return h.Layers[s], nil
}

func digestOf(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

package legacy

import (
	"errors"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// descLayer is a layer known by its descriptor only: enough to compose a
// manifest and config that list it (its blob is in the repository), never
// to read it. Signature layers are stored uncompressed, so the digest is
// also the diff ID.
type descLayer struct{ d v1.Descriptor }

var errDescriptorOnly = errors.New("a layer known by its descriptor only has no content here")

func (l descLayer) Digest() (v1.Hash, error)             { return l.d.Digest, nil }
func (l descLayer) DiffID() (v1.Hash, error)             { return l.d.Digest, nil }
func (l descLayer) Size() (int64, error)                 { return l.d.Size, nil }
func (l descLayer) MediaType() (types.MediaType, error)  { return l.d.MediaType, nil }
func (l descLayer) Compressed() (io.ReadCloser, error)   { return nil, errDescriptorOnly }
func (l descLayer) Uncompressed() (io.ReadCloser, error) { return nil, errDescriptorOnly }

// describe is layer's descriptor: its digest, size and media type.
func describe(layer v1.Layer) (v1.Descriptor, error) {
	d, err := layer.Digest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	size, err := layer.Size()
	if err != nil {
		return v1.Descriptor{}, err
	}
	mt, err := layer.MediaType()
	if err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: mt, Size: size, Digest: d}, nil
}

func readAll(r io.Reader) ([]byte, error) { return io.ReadAll(r) }

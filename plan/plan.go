package plan

import (
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nestattest/nestattest/walk"
)

// MaxShards is the most shards a plan has: Tekton's default cap on the
// combinations of a matrix (default-max-matrix-combinations-count), which
// Tekton checks only when a Pipeline is submitted; GitHub Actions allows
// 256 jobs a matrix too.
const MaxShards = 256

// MaxShardBytes is the largest shard document written or read.
const MaxShardBytes = 64 << 20

// Media types and annotations of the plan artifact.
const (
	// ArtifactType is the plan manifest's artifactType.
	ArtifactType = "application/vnd.nestattest.plan.v1+json"
	// LayerMediaType is the media type of each shard's document.
	LayerMediaType = "application/vnd.nestattest.plan.shard.v1+json"
	// AnnotationRoot, on the manifest, is the root as repository@digest.
	AnnotationRoot = "dev.nestattest.plan.root"
	// AnnotationShards, on the manifest, is the number of shards.
	AnnotationShards = "dev.nestattest.plan.shards"
	// AnnotationNodes, on the manifest, is the number of nodes of the tree;
	// on a layer, the number of nodes of the shard.
	AnnotationNodes = "dev.nestattest.plan.nodes"
	// AnnotationShard, on a layer, is its shard id.
	AnnotationShard = "dev.nestattest.plan.shard"
)

// Root is the tree's root as the plan was made for it.
type Root struct {
	// Repository is the root's repository, such as quay.io/org/ko-build.
	Repository string `json:"repository"`
	// Digest is the root's digest.
	Digest v1.Hash `json:"digest"`
}

// Walk are the bounds the tree was walked with; shards record them in the
// provenance they attest, as an unsharded run does.
type Walk struct {
	MaxDepth     int  `json:"maxDepth"`
	MaxNodes     int  `json:"maxNodes"`
	AllowMissing bool `json:"allowMissing"`
}

// Entry is one node of the tree in a plan.
type Entry struct {
	// ID is the node's position in the tree's pre-order; the root is 0.
	ID int `json:"id"`
	// Parent is the ID of the index that lists the node (the first in tree
	// order); -1 for the root.
	Parent int `json:"parent"`
	// Index is the node's position in its parent's manifests; -1 for the
	// root.
	Index int `json:"index"`
	// Shard is the shard that signs the node.
	Shard int `json:"shard"`
	// Path is the node's repository relative to the root's, "." for the
	// root's own.
	Path string `json:"path"`
	// Kind, Digest, Size, MediaType, ArtifactType, Platform and Annotations
	// are the node's, as the walk found them.
	Kind         walk.Kind         `json:"kind"`
	Digest       v1.Hash           `json:"digest"`
	Size         int64             `json:"size"`
	MediaType    types.MediaType   `json:"mediaType,omitempty"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Platform     *v1.Platform      `json:"platform,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// Shard is one shard's document: its nodes and their ancestors.
type Shard struct {
	// Root, Shards, Nodes and Walk repeat the plan's.
	Root   Root `json:"root"`
	Shards int  `json:"shards"`
	Nodes  int  `json:"nodes"`
	Walk   Walk `json:"walk"`
	// Shard is this shard's id.
	Shard int `json:"shard"`
	// Entries are the shard's nodes and every ancestor of them, in tree
	// order (by ID); the root is always first.
	Entries []Entry `json:"entries"`
}

// Own returns the number of entries the shard signs.
func (s *Shard) Own() int {
	n := 0
	for _, e := range s.Entries {
		if e.Shard == s.Shard {
			n++
		}
	}
	return n
}

package catalog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/nestattest/nestattest/internal/sample"
	"github.com/nestattest/nestattest/walk"
)

// BenchmarkIndex composes a parent index of MaxChildren entries, offline.
func BenchmarkIndex(b *testing.B) {
	entries := make([]Entry, MaxChildren)
	for i := range entries {
		sum := sha256.Sum256(fmt.Append(nil, i))
		entries[i] = Entry{Descriptor: v1.Descriptor{
			MediaType: types.OCIImageIndex, Size: 1000 + int64(i),
			Digest:      v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])},
			Annotations: map[string]string{walk.AnnotationRepository: fmt.Sprintf("app%05d", MaxChildren-i)},
		}}
	}
	b.ReportAllocs()
	for b.Loop() {
		idx, err := Index(entries, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := idx.Digest(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkComposeMirror composes and mirrors 50 single-platform images on
// the in-process registry that checks blobs and mounts them, and reports
// the requests per child.
func BenchmarkComposeMirror(b *testing.B) {
	const n = 50
	var requests int
	for b.Loop() {
		b.StopTimer()
		reg := newFakeRegistry(b, true, true)
		parent := mustRepo(b, reg.host+"/org/bench")
		var children []Child
		for i := range n {
			repo := parent.Registry.Repo(parent.RepositoryStr(), fmt.Sprintf("app%02d", i))
			img, err := sample.Image(repo.RepositoryStr(), v1.Platform{OS: "linux", Architecture: "amd64"})
			if err != nil {
				b.Fatal(err)
			}
			if err := remote.Write(repo.Tag("latest"), img); err != nil {
				b.Fatal(err)
			}
			children = append(children, Child{Path: fmt.Sprintf("app%02d", i), Ref: repo.Tag("latest"), Source: "bench"})
		}
		reg.counts()
		b.StartTimer()
		res, err := Compose(context.Background(), parent.Tag("latest"), Options{Client: testClient(), Children: children})
		if err != nil || !res.Mirrored {
			b.Fatal(err)
		}
		counts, _ := reg.counts()
		requests = 0
		for _, c := range counts {
			requests += c
		}
	}
	b.ReportMetric(float64(requests)/n, "requests/child")
}

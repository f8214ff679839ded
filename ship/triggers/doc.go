// Package triggers holds the tests of the propagate Task's Tekton Triggers
// samples (task/nestattest-propagate/samples/triggers-*.yaml), checked with
// tektoncd/triggers v0.33.0's own types, validation, CEL interceptor,
// binding and template code on the CloudEvent Tekton Pipelines' own code
// sends, down to the propagate TaskRun resolved as Tekton's reconciler
// would.
//
// It is a module of its own so that the main module does not require
// tektoncd/triggers: `go mod tidy` loads the tests of every package a module
// imports, and tektoncd/triggers' tests import knative.dev/eventing, whose
// v0.30.3 (the version tektoncd/triggers v0.33.0 names) imports
// knative.dev/pkg packages (metrics, tracing/config) that the
// knative.dev/pkg Tekton Pipelines v1.14.0 needs no longer has. This module
// requires knative.dev/eventing v0.49.2, the release built on that
// knative.dev/pkg; no package of knative.dev/eventing is compiled into
// these tests. Every module it shares with the main module is at the main
// module's version (test/release's TestGoModTidy checks it), so the two share
// compiled packages in the build cache.
//
// Its tests read the repository's YAML by relative path (../..) and run
// with
//
//	cd ship/triggers && GOWORK=off go test ./...
package triggers

// Package ship holds the tests of what nestattest ships for the places users
// run it: the Tekton Task (task/nestattest), the StepAction
// (stepaction/nestattest) and their samples, checked with Tekton Pipelines'
// own types, defaulting, validation, variable substitution and pod builder
// (tektoncd/pipeline v1.14.0), and run, step by step, the way a pod would run
// them: Tekton's entrypoint and the step's exact command line in a chroot laid
// out like the pod's containers, against a real registry. The Tekton modules
// are imported by this package's tests only, so the nestattest binary never
// links them. The Tekton Triggers samples of the propagate Task are tested
// with tektoncd/triggers' own code in ship/triggers, a module of its own, so
// that this module does not require tektoncd/triggers.
package ship

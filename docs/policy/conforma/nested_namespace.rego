#
# METADATA
# title: SLSA - Build - Nested namespaces
# description: >-
#   A tree of OCI artifacts that spans nested repositories (a parent index in
#   quay.io/org/ko-build whose entries point into quay.io/org/ko-build/app1,
#   app2, ...) is built by one task, which names the parent in its IMAGE_URL
#   and IMAGE_DIGEST results. When the tree is too big to list in an IMAGES
#   result, Tekton Chains' provenance names the parent alone, and
#   `nestattest propagate` gives every node below it that provenance with the
#   node as subject. These rules stand in for
#   slsa_build_scripted_build.subject_build_task_matches and
#   image_built_by_trusted_task: a subject, and the image validated, pass when
#   a trusted build task's results name them, as there, or when they are
#   nodes of the tree below the parent those results name, reachable from it
#   through the nested-namespace convention (each node in its parent index's
#   repository or below it). The tree is what `nestattest tree -o json`
#   prints for the parent by digest, handed to the policy as data in a JWS
#   (ES256) signed by the identity `nestattest propagate` signs with, Tekton
#   Chains' key: the rules check that signature with the public key in the
#   rule data and ignore a tree that does not carry it.
#
#   Data:
#     data.nestattest.trees: JWS compact serializations, each over the tree
#       JSON of one parent.
#     data.rule_data.nestattest_tree_signer: the PEM public key (or
#       certificate) the trees must be signed with.
#     data.rule_data.nestattest_trusted_build_tasks: the build tasks trusted
#       to name parents, each {"uri": ..., "digest": {"sha1": ...}} as Tekton
#       records where a task came from (status.provenance.refSource).
#
package nested_namespace

import rego.v1

_slsa_v1 := "https://slsa.dev/provenance/v1"

# METADATA
# title: Provenance subject is a built image or a node below one
# description: >-
#   Every subject of the provenance is an image a trusted build task's
#   results name (IMAGE_URL@IMAGE_DIGEST, IMAGES, ARTIFACT_URI@ARTIFACT_DIGEST),
#   or a node of a signed tree below such an image.
# custom:
#   short_name: subject_build_task_matches
#   failure_msg: The attestation subject, %q, is neither an image a trusted build task names nor a node below one
#   solution: >-
#     Run `nestattest propagate` on the parent the build task names, and hand
#     the policy the parent's tree signed by the same identity.
#
deny contains result if {
	some att in _provenance
	some subject in att.statement.subject
	ref := sprintf("%s@sha256:%s", [subject.name, subject.digest.sha256])
	not _built(ref)
	result := _result("subject_build_task_matches", sprintf(
		"The attestation subject, %q, is neither an image a trusted build task names nor a node below one",
		[ref],
	))
}

# METADATA
# title: Image built by a trusted task, or below one
# description: >-
#   The image validated is one a trusted build task names, or a node of a
#   signed tree below one.
# custom:
#   short_name: image_built_by_trusted_task
#   failure_msg: Image %q was not built by a trusted task, nor is it below an image that was
#   solution: >-
#     Make sure a trusted task built the parent, and hand the policy the
#     parent's tree signed by the identity `nestattest propagate` signs with.
#
deny contains result if {
	not _built(input.image.ref)
	result := _result("image_built_by_trusted_task", sprintf(
		"Image %q was not built by a trusted task, nor is it below an image that was",
		[input.image.ref],
	))
}

_result(code, msg) := {"code": sprintf("nested_namespace.%s", [code]), "msg": msg}

# _provenance: the SLSA v1.0 provenance among the attestations Conforma
# verified for the image.
_provenance contains att if {
	some att in input.attestations
	att.statement.predicateType == _slsa_v1
}

# _tasks: the TaskRuns a PipelineRun's provenance records in full (Chains'
# slsa-tekton build type), as Conforma's lib.tekton reads them.
_tasks contains task if {
	some att in _provenance
	some dep in att.statement.predicate.buildDefinition.resolvedDependencies
	dep.name == "pipelineTask"
	dep.content
	task := json.unmarshal(base64.decode(dep.content))
}

# _trusted_tasks: those that came from a trusted place.
_trusted_tasks contains task if {
	some task in _tasks
	source := task.status.provenance.refSource
	some trusted in data.rule_data.nestattest_trusted_build_tasks
	source.uri == trusted.uri
	source.digest == trusted.digest
}

_results(task, suffix) := [r.value |
	some r in task.status.results
	endswith(r.name, suffix)
	trim_space(r.value) != ""
]

# _named: repository@digest of every image a trusted build task names.
_named contains ref if {
	some task in _trusted_tasks
	some kind in [["IMAGE_URL", "IMAGE_DIGEST"], ["ARTIFACT_URI", "ARTIFACT_DIGEST"]]
	urls := _results(task, kind[0])
	digests := _results(task, kind[1])
	some i, url in urls
	ref := sprintf("%s@%s", [_repository(trim_space(url)), trim_space(digests[i])])
}

_named contains ref if {
	some task in _trusted_tasks
	some images in _results(task, "IMAGES")
	some image in split(images, ",")
	trim_space(image) != ""
	parts := split(trim_space(image), "@")
	ref := sprintf("%s@%s", [_repository(parts[0]), parts[1]])
}

# _repository: a reference's repository, its tag or digest cut off.
_repository(ref) := repo if {
	name := split(ref, "@")[0]
	segments := split(name, "/")
	last := segments[count(segments) - 1]
	repo := concat("/", array.concat(array.slice(segments, 0, count(segments) - 1), [split(last, ":")[0]]))
	count(segments) > 1
}

# _trees: the tree documents signed by the trusted identity.
_trees contains tree if {
	some token in data.nestattest.trees
	io.jwt.verify_es256(token, data.rule_data.nestattest_tree_signer)
	[_, tree, _] := io.jwt.decode(token)
}

# _below: the nodes of a signed tree whose root a trusted build task names,
# reachable from the root through index entries that each stay in the
# listing index's repository or below it.
_below contains ref if {
	some tree in _trees
	root := sprintf("%s@%s", [tree.root.repository, tree.root.digest])
	root in _named
	some ref in graph.reachable(_edges(tree), {root})
}

_edges(tree) := {from: children |
	some node in tree.nodes
	from := sprintf("%s@%s", [node.repository, node.digest])
	children := {to |
		some child in tree.nodes
		child.parent == from
		_within(child.repository, node.repository)
		to := sprintf("%s@%s", [child.repository, child.digest])
	}
}

_within(repo, parent) if repo == parent

_within(repo, parent) if startswith(repo, concat("", [parent, "/"]))

_built(ref) if ref in _named

_built(ref) if ref in _below

#!/usr/bin/env bash
# tektoncd/catalog's test runner sources this before it creates the Task
# (the Task is in ${TMPF}, the test namespace is ${tns}). It gives the test
# what the Task needs around it:
# - a registry in the namespace (distribution v3, by digest), reachable from
#   every TaskRun of the test at registry.${tns}.svc.cluster.local:5000;
# - a throwaway key for this test namespace alone, nestattest-test-key
#   (cosign.key, cosign.pub, cosign.password), made by cosign v2.6.5 (pinned
#   by module version, which go run checks against the Go checksum
#   database), and a Role that lets the namespace's default ServiceAccount
#   read that one Secret: the Task signs with KEY=k8s://NAMESPACE/SECRET,
#   since a catalog test cluster has neither a KMS nor a Fulcio. It is no
#   Chains key, and no real deployment passes key material this way (see
#   the Task's README: KMS through workload identity, or keyless).
set -euo pipefail
registry_image=docker.io/library/registry:3@sha256:1be55279f18a2fe1a74edf2664cac61c1bea305b7b4642dab412e7affdcb3e33

kubectl -n "${tns}" create deployment registry --image="${registry_image}" --port=5000
kubectl -n "${tns}" expose deployment registry --port=5000
kubectl -n "${tns}" rollout status deployment/registry --timeout=180s

COSIGN_PASSWORD="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
  go run github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5 generate-key-pair "k8s://${tns}/nestattest-test-key"
kubectl -n "${tns}" create role nestattest-test-key --verb=get --resource=secrets --resource-name=nestattest-test-key
kubectl -n "${tns}" create rolebinding nestattest-test-key --role=nestattest-test-key --serviceaccount="${tns}:default"

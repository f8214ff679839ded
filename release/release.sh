#!/usr/bin/env bash
# The release, against any registry: `make release` and `make stamp` run it
# (see the Makefile for the variables, docs/releasing.md for the steps).
#
#   release.sh stamp    build reproducibly, push nothing, and stamp the
#                       image digest and the binaries' sums into the tree
#   release.sh release  build the binaries (with checksums) and the
#                       multi-arch image (with an SBOM per image), push,
#                       sign and attest the image index and every platform
#                       image with nestattest itself, verify them, sign the
#                       checksums, and stamp a copy of the catalog; with
#                       CHECK_STAMP=1 the build must be what the tree was
#                       stamped with
#
# SIGN_FLAGS are more `nestattest sign` flags (--tlog-upload=false for a
# registry with no way to the transparency log); VERIFY_FLAGS replace the
# self-check's --insecure-ignore-tlog (--trusted-root … once the release
# is logged).
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:?usage: release.sh stamp|release}"
: "${VERSION:?VERSION=vX.Y.Z}" "${REGISTRY:?REGISTRY=host[:port]/namespace}"
GO="${GO:-go}"
KO="${KO:-ko}"
COSIGN="${COSIGN:-cosign}"
DIST="${DIST:-dist}"
PLATFORMS="${PLATFORMS:-linux/amd64 linux/arm64 linux/s390x linux/ppc64le}"
IMAGE_REPO="${IMAGE_REPO:-$REGISTRY/nestattest}"
# Reproducible: no VCS stamp, trimmed paths, and exactly go.mod's Go (the
# go command fetches it when the machine's differs).
export VERSION GOFLAGS="${GOFLAGS:-} -buildvcs=false" CGO_ENABLED=0
export GOTOOLCHAIN="${GOTOOLCHAIN:-go$(awk '$1 == "go" { print $2; exit }' go.mod)}"

log() { printf 'release: %s\n' "$*" >&2; }

# binaries builds nestattest for every platform, as .ko.yaml builds it for
# the image, and writes their sums.
binaries() {
  rm -rf "$DIST" && mkdir -p "$DIST"
  local p os arch
  for p in $PLATFORMS; do
    os="${p%/*}" arch="${p#*/}"
    log "binary $os/$arch"
    GOOS="$os" GOARCH="$arch" "$GO" build -trimpath -ldflags "-s -w -X main.version=$VERSION" \
      -o "$DIST/nestattest-$os-$arch" ./cmd/nestattest
  done
  (cd "$DIST" && sha256sum nestattest-* > checksums.txt)
}

# image builds the image index with ko for every platform; $1 is push=true
# or push=false. It prints the index by digest.
image() {
  local ref
  ref="$(KO_DOCKER_REPO="$IMAGE_REPO" "$KO" build --bare --"$1" --tags "$VERSION" \
    --platform "$(tr ' ' ',' <<<"$PLATFORMS")" --sbom spdx --sbom-dir "$DIST/sbom" \
    --image-refs "$DIST/image-refs.txt" ./cmd/nestattest)"
  echo "$IMAGE_REPO@${ref##*@}"
}

stamp_tool() { "$GO" run ./internal/release/stamp "$@"; }

case "$mode" in
stamp)
  binaries
  img="$(image push=false)"
  log "stamping $VERSION $img"
  stamp_tool -version "$VERSION" -image "$img" -checksums "$DIST/checksums.txt"
  stamp_tool -check
  ;;
release)
  : "${KEY:?KEY=a cosign key reference (file, env://, k8s://, awskms://, …)}"
  binaries
  if [ "${CHECK_STAMP:-0}" = 1 ]; then
    # Before anything is pushed: the binaries are what the tree names.
    stamp_tool -compare -version "$VERSION" -checksums "$DIST/checksums.txt"
  fi
  img="$(image push=true)"
  log "pushed $img"
  if [ "${CHECK_STAMP:-0}" = 1 ]; then
    stamp_tool -compare -version "$VERSION" -image "$img" -checksums "$DIST/checksums.txt"
  fi
  host="$DIST/nestattest-$("$GO" env GOOS)-$("$GO" env GOARCH)"
  [ -x "$host" ] || { host="$DIST/nestattest-host"; "$GO" build -o "$host" ./cmd/nestattest; }
  "$host" version
  # The index and every platform image, signed and attested by the
  # nestattest being released, in both layouts so cosign v2 (tags) and v3
  # (bundles) read them.
  "$host" sign --key "$KEY" --format both --report "$DIST/sign-report.json" ${SIGN_FLAGS:-} "$img"
  "$COSIGN" public-key --key "$KEY" > "$DIST/cosign.pub"
  "$host" verify --key "$DIST/cosign.pub" ${VERIFY_FLAGS:---insecure-ignore-tlog} --require-root -o json "$img" > "$DIST/verify-report.json"
  # The binaries: their checksums signed with the same key, as cosign
  # sign-blob signs (base64 ASN.1 ECDSA over SHA-256; `cosign verify-blob`
  # and `openssl dgst -verify` both check it).
  "$COSIGN" sign-blob --yes --key "$KEY" --tlog-upload=false --output-signature "$DIST/checksums.txt.sig" "$DIST/checksums.txt" >/dev/null
  # The catalog as released: task/ and stepaction/ stamped with this
  # release's image (and the commit, when this is a git checkout).
  mkdir -p "$DIST/catalog/release"
  cp -r task stepaction "$DIST/catalog/"
  cp release/stamp.json "$DIST/catalog/release/"
  rev="$(git rev-parse HEAD 2>/dev/null || true)"
  stamp_tool -root "$DIST/catalog" -version "$VERSION" -image "$img" ${rev:+-revision "$rev"} >/dev/null
  tar -C "$DIST/catalog" -czf "$DIST/resources.tar.gz" task stepaction
  rm -rf "$DIST/catalog"
  printf '%s\n' "$img" > "$DIST/image.txt"
  log "released $VERSION: $img"
  ;;
*)
  echo "usage: release.sh stamp|release" >&2
  exit 2
  ;;
esac

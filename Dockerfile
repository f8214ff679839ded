# The nestattest step image: the static nestattest binary on a distroless,
# non-root base, for Tekton steps and anywhere else a container runs.
#
#   docker build --build-arg VERSION=v0.1.0 -t ghcr.io/nestattest/nestattest:v0.1.0 .
#   buildah bud --build-arg VERSION=v0.1.0 -t ghcr.io/nestattest/nestattest:v0.1.0 .
#
# Both base images are build arguments, so the image can be built from a
# private mirror: --build-arg GO_IMAGE=mirror.example/golang:1.26.8
# --build-arg BASE_IMAGE=mirror.example/distroless/static-debian12:nonroot.
# The final base needs nothing but CA certificates and the non-root user
# 65532; scratch with both works as well as distroless.

ARG GO_IMAGE=docker.io/library/golang:1.26.8
ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${GO_IMAGE} AS build
WORKDIR /src
# Modules first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
ARG TARGETOS
ARG TARGETARCH
ENV CGO_ENABLED=0
# The same package `go install github.com/nestattest/nestattest/cmd/nestattest`
# builds (test/e2e/ship_test.go checks it): static, reproducible paths, the
# version shown by `nestattest version`.
RUN GOOS="${TARGETOS:-linux}" GOARCH="${TARGETARCH}" go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/nestattest ./cmd/nestattest

FROM ${BASE_IMAGE}
ARG VERSION=devel
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
LABEL org.opencontainers.image.title="nestattest" \
      org.opencontainers.image.description="Sign, attest and verify trees of OCI artifacts across nested registry namespaces" \
      org.opencontainers.image.source="https://github.com/nestattest/nestattest" \
      org.opencontainers.image.url="https://github.com/nestattest/nestattest" \
      org.opencontainers.image.documentation="https://github.com/nestattest/nestattest#readme" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
COPY --from=build /out/nestattest /usr/local/bin/nestattest
# distroless's nonroot user, by number so that runAsNonRoot can check it.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/nestattest"]
CMD ["--help"]

# The nestattest step image, for those who build it themselves: the static
# nestattest binary on a distroless, non-root base, laid out as the released
# image (`make release` builds that one with ko, .ko.yaml): the binary at
# /ko-app/nestattest, the command the Task and StepAction run.
#
#   docker buildx build --platform linux/amd64,linux/arm64 --build-arg VERSION=v0.1.0 -t registry.example/nestattest:v0.1.0 .
#   buildah bud --build-arg VERSION=v0.1.0 -t registry.example/nestattest:v0.1.0 .
#
# The build stage runs on the build machine's platform and cross-compiles
# (Go needs no emulator), so a multi-platform build runs nothing under
# emulation. Both base images are build arguments, pinned by digest, so the
# image can be built from a private mirror: --build-arg
# GO_IMAGE=mirror.example/golang:1.26.8 --build-arg
# BASE_IMAGE=mirror.example/distroless/static-debian12:nonroot. The final
# base needs nothing but CA certificates and the non-root user 65532;
# scratch with both works as well as distroless.

ARG GO_IMAGE=docker.io/library/golang:1.26.8@sha256:3c3e25a4da13fd0478eed2df1eb35a0e667094a7124d3993a6a1d30f71c17e79
ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot@sha256:d093aa3e30dbadd3efe1310db061a14da60299baff8450a17fe0ccc514a16639

FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build
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
# builds (test/e2e/ship_test.go checks it), with the flags of .ko.yaml:
# static, reproducible, the version shown by `nestattest version`.
RUN GOOS="${TARGETOS:-linux}" GOARCH="${TARGETARCH}" go build -trimpath -buildvcs=false -ldflags "-s -w -X main.version=${VERSION}" -o /out/nestattest ./cmd/nestattest

FROM ${BASE_IMAGE}
ARG VERSION=devel
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
LABEL org.opencontainers.image.title="nestattest" \
      org.opencontainers.image.description="Sign, attest and verify trees of OCI artifacts across nested registry namespaces" \
      org.opencontainers.image.source="https://github.com/nestattest/nestattest" \
      org.opencontainers.image.url="https://github.com/nestattest/nestattest" \
      org.opencontainers.image.documentation="https://github.com/nestattest/nestattest/tree/main/docs" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
COPY --from=build /out/nestattest /ko-app/nestattest
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/ko-app
# distroless's nonroot user, by number so that runAsNonRoot can check it.
USER 65532:65532
ENTRYPOINT ["/ko-app/nestattest"]
CMD ["--help"]

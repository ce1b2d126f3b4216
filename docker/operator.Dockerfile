# syntax=docker/dockerfile:1.7
# The eddy-operator image. Build from the repository root (BuildKit):
#
#   docker build -f docker/operator.Dockerfile -t ghcr.io/eddy-dev/eddy-operator:dev .
#
# Not built on the development machine (it has no container runtime):
# e2e/kind/up.sh is the first thing to build it.

# The workspace declares rust-version 1.89, but the locked dependencies need
# more: aws-sdk-s3 1.157 (the processor's) declares 1.94, and the test suite
# runs on 1.95. Both images use the same toolchain.
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
# The workspace is resolved as a whole, so the build stage carries the same
# native toolchain in both images: libclang for bindgen (librocksdb-sys),
# cmake for librdkafka's cmake build (rdkafka's cmake-build feature).
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang libclang-dev cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Registry, git checkouts and target/ are BuildKit caches: a rebuild after a
# source change recompiles only the workspace crates. target/ is a cache, not
# part of the layer, so the binary is copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target,id=eddy-operator-target,sharing=locked \
    cargo build --release --locked -p eddy-operator --bin eddy-operator \
 && install -D -m 0755 target/release/eddy-operator /out/eddy-operator

# glibc and libgcc_s (all the operator links dynamically), CA certificates,
# no shell; runs as nonroot (65532:65532), as the chart's securityContext
# expects.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/eddy-operator /usr/local/bin/eddy-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/eddy-operator"]
CMD ["run"]

# syntax=docker/dockerfile:1.7
# The eddy-processor image, the one the operator runs in each StreamJob's
# pods (it passes only arguments, so the binary is the entrypoint). Build
# from the repository root (BuildKit):
#
#   docker build -f docker/processor.Dockerfile -t ghcr.io/eddy-dev/eddy-processor:dev .
#
# Not built on the development machine (it has no container runtime):
# e2e/kind/up.sh is the first thing to build it.

# The workspace declares rust-version 1.89, but the locked dependencies need
# more: aws-sdk-s3 1.157 declares 1.94, and the test suite runs on 1.95.
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
# Native parts of the build:
# - librocksdb-sys: a C++ compiler (build-essential, in the rust image) and
#   libclang for bindgen;
# - rdkafka (cmake-build): cmake builds librdkafka, linked statically;
# - lz4-sys and aws-lc-sys: built by cc from their bundled sources;
# - libz-sys: zlib. The rust image has zlib1g-dev, and libz-sys would link it
#   dynamically, but the runtime image has no libz.so.1: LIBZ_SYS_STATIC
#   makes it build its bundled zlib into the binary.
# - RocksDB: compiled from source and linked statically (ROCKSDB_COMPILE),
#   so that the image is one binary; the development build links the
#   project's prebuilt shared library instead (.cargo/config.toml).
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang libclang-dev cmake \
 && rm -rf /var/lib/apt/lists/*
ENV LIBZ_SYS_STATIC=1 ROCKSDB_COMPILE=1
WORKDIR /src
COPY . .
# Registry, git checkouts and target/ are BuildKit caches: a rebuild after a
# source change recompiles only the workspace crates. target/ is a cache, not
# part of the layer, so the binary is copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target,id=eddy-processor-target,sharing=locked \
    cargo build --release --locked -p eddy-processor --bin eddy-processor \
 && install -D -m 0755 target/release/eddy-processor /out/eddy-processor

# glibc, libgcc_s and libstdc++ (RocksDB is C++), CA certificates for S3 and
# Kafka over TLS, no shell; runs as nonroot (65532:65532), as the pods the
# operator builds expect. State and scratch live on the pod's volumes (the
# operator mounts /tmp and the state directory; the root file system is
# read-only).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/eddy-processor /usr/local/bin/eddy-processor
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/eddy-processor"]

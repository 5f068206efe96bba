# system-info-exporter image: a cached dependency layer on the official Rust
# image, and only the stripped binary on debian:bookworm-slim at run time.
#   make docker-build    (or: DOCKER_BUILDKIT=1 docker build -t system-info-exporter:0.1.0 .)
# See docs/docker-build.md for why each step is here.

# Base images, overridable for a mirror or a pinned digest. The Rust version
# matches rust-version in Cargo.toml (a test keeps them in step).
ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS builder
WORKDIR /build

# Dependencies first, against stub targets: this layer is rebuilt only when
# Cargo.toml or Cargo.lock change, not on every source edit. The stubs' own
# artefacts are removed afterwards: the real sources may carry older mtimes,
# and cargo would then keep the stub binary.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/collect.rs
RUN --mount=type=cache,id=sie-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=sie-cargo-git,target=/usr/local/cargo/git \
    cargo build --release --locked \
    && rm -rf target/release/.fingerprint/system-info-exporter-* \
        target/release/deps/system_info_exporter-* \
        target/release/deps/libsystem_info_exporter-* \
        target/release/system-info-exporter

COPY src ./src
ARG REVISION=unknown
RUN --mount=type=cache,id=sie-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=sie-cargo-git,target=/usr/local/cargo/git \
    SIE_REVISION=${REVISION} cargo build --release --locked --bin system-info-exporter \
    && cp target/release/system-info-exporter /usr/local/bin/

FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="system-info-exporter" \
      org.opencontainers.image.description="Prometheus exporter for NVIDIA GPU metrics (NVML) and host statistics" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${RUNTIME_IMAGE}"

RUN useradd --uid 65532 --user-group --no-create-home --shell /usr/sbin/nologin exporter
COPY --from=builder /usr/local/bin/system-info-exporter /usr/local/bin/system-info-exporter

# The NVIDIA Container Toolkit mounts libnvidia-ml.so.1 from the host driver
# when these are set; nothing NVIDIA is baked into the image.
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=utility
USER exporter
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/system-info-exporter", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/system-info-exporter"]

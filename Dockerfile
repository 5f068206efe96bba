# system-info-exporter image. The default target is a minimal image: the
# stripped binary, the glibc files it links against (from the builder, so they
# match what it was linked with), a numeric non-root user; no shell, no package
# manager. `--target debug` gives the same binary on debian:bookworm-slim.
#   make docker-build              (or: DOCKER_BUILDKIT=1 docker build -t system-info-exporter:0.1.0 .)
#   make docker-build-debug        (--target debug)
#   make docker-build-multiarch    (linux/amd64 + linux/arm64, cross-compiled, no emulation)
# See docs/docker-build.md for why each step is here.

# Base images, overridable for a mirror or a pinned digest. The Rust version
# matches rust-version in Cargo.toml (a test keeps them in step).
ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# The builder always runs on the build machine's own platform and
# cross-compiles for TARGETARCH, so an arm64 image needs no emulation.
FROM --platform=$BUILDPLATFORM ${RUST_IMAGE} AS builder
ARG TARGETARCH
WORKDIR /build

# Which Rust target and Debian multiarch directory TARGETARCH means; for a
# foreign architecture also the C cross toolchain (the linker), the Rust
# standard library for it, and the target's glibc packages for the image.
# A native build installs nothing here.
RUN set -eu; \
    case "${TARGETARCH:-$(dpkg --print-architecture)}" in \
      amd64) rust=x86_64-unknown-linux-gnu; gnu=x86_64-linux-gnu; deb=amd64; ld=ld-linux-x86-64.so.2 ;; \
      arm64) rust=aarch64-unknown-linux-gnu; gnu=aarch64-linux-gnu; deb=arm64; ld=ld-linux-aarch64.so.1 ;; \
      *) echo "TARGETARCH=$TARGETARCH is not supported: build for linux/amd64 or linux/arm64" >&2; exit 1 ;; \
    esac; \
    mkdir -p /target; echo "$rust" >/target/rust; echo "$gnu" >/target/gnu; echo "$ld" >/target/ld; \
    if [ "$(dpkg --print-architecture)" = "$deb" ]; then \
      ln -s "/usr/lib/$gnu" /target/lib; \
    else \
      dpkg --add-architecture "$deb"; \
      apt-get update -qq; \
      apt-get install -y -qq --no-install-recommends "gcc-$(echo "$gnu" | tr _ -)" "libc6-dev-$deb-cross"; \
      cd /target && apt-get download "libc6:$deb" "libgcc-s1:$deb" && mkdir debs && mv ./*.deb debs/; \
      for p in debs/*.deb; do dpkg-deb -x "$p" /target/root; done; \
      mkdir /target/lib; \
      for d in "/target/root/lib/$gnu" "/target/root/usr/lib/$gnu"; do \
        if [ -d "$d" ]; then cp -a "$d"/. /target/lib/; fi; \
      done; \
      rm -rf /var/lib/apt/lists/*; \
      rustup target add "$rust"; \
    fi
# Used only when linking for that target; on Debian both names exist (natively
# as the system gcc, across architectures from gcc-<triple>).
ENV CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER=x86_64-linux-gnu-gcc \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc

# cargo-auditable embeds the dependency list (crate names and versions) in the
# binary, where vulnerability scanners read it: the image has no package
# database. Built once; the layer is reused until the Rust image changes.
ARG CARGO_AUDITABLE_VERSION=0.7.7
RUN --mount=type=cache,id=sie-cargo-registry,target=/usr/local/cargo/registry \
    cargo install --locked --version "$CARGO_AUDITABLE_VERSION" cargo-auditable \
    && rm -rf /usr/local/cargo/registry/cache/cargo-auditable-*

# Dependencies first, against stub targets: this layer is rebuilt only when
# Cargo.toml or Cargo.lock change, not on every source edit. When they do
# change, the target directory of the last dependency build (kept in a cache
# mount, one per architecture) seeds this one, so a version bump recompiles
# only the bumped crates and what depends on them. The stubs' own artefacts are
# removed before the copy is kept: the real sources may carry older mtimes, and
# cargo would then keep the stub binary.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/collect.rs
RUN --mount=type=cache,id=sie-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=sie-cargo-git,target=/usr/local/cargo/git \
    --mount=type=cache,id=sie-cargo-target,target=/cache \
    set -eu; rust=$(cat /target/rust); seed=/cache/$rust; \
    if [ -d "$seed" ]; then cp -a "$seed" target; fi; \
    cargo auditable build --release --locked --target "$rust"; \
    rm -rf target/"$rust"/release/.fingerprint/system-info-exporter-* \
        target/"$rust"/release/deps/system_info_exporter-* \
        target/"$rust"/release/deps/libsystem_info_exporter-* \
        target/"$rust"/release/system-info-exporter; \
    rm -rf "$seed.new"; cp -a target "$seed.new"; rm -rf "$seed"; mv "$seed.new" "$seed"

COPY src ./src
ARG REVISION=unknown
# Nothing in the build reads the clock today; should a build script ever embed
# a date, it takes the commit's (make docker-build passes it).
ARG SOURCE_DATE_EPOCH
RUN --mount=type=cache,id=sie-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=sie-cargo-git,target=/usr/local/cargo/git \
    set -eu; rust=$(cat /target/rust); \
    SIE_REVISION=${REVISION} cargo auditable build --release --locked --target "$rust" --bin system-info-exporter; \
    mkdir -p /rootfs/usr/local/bin; \
    cp target/"$rust"/release/system-info-exporter /rootfs/usr/local/bin/

# The minimal image's root filesystem, assembled here because the final stage
# has no shell: the glibc files the binary and NVML need, the loader at the
# path the binary names, and the small /etc files the NVIDIA Container Toolkit
# and scanners look for (docs/docker-build.md, "The minimal image").
# libpthread, libdl and librt are empty stubs since glibc 2.34, but a library
# linked against an older glibc still names them and does not load without
# them; NVIDIA's driver libraries are built for old distributions, so the
# stubs stay (14 KB each).
# The dpkg records and copyright files of libc6 and libgcc-s1 let scanners and
# licence checks see them (libgcc-s1's copyright is gcc's, in gcc-*-base).
ARG RUNTIME_LIBS="libc.so.6 libm.so.6 libgcc_s.so.1 libpthread.so.0 libdl.so.2 librt.so.1"
RUN set -eu; gnu=$(cat /target/gnu); ld=$(cat /target/ld); r=/rootfs; \
    bin=$r/usr/local/bin/system-info-exporter; \
    mkdir -p "$r/usr/lib/$gnu" "$r/etc/ld.so.conf.d" "$r/var/lib/dpkg/status.d" "$r/usr/share/doc"; \
    for lib in $ld $RUNTIME_LIBS; do cp -L "/target/lib/$lib" "$r/usr/lib/$gnu/"; done; \
    ln -s usr/lib "$r/lib"; \
    if [ "$gnu" = x86_64-linux-gnu ]; then \
      mkdir -p "$r/usr/lib64"; ln -s usr/lib64 "$r/lib64"; ln -s "../lib/$gnu/$ld" "$r/usr/lib64/$ld"; \
    else \
      ln -s "$gnu/$ld" "$r/usr/lib/$ld"; \
    fi; \
    interp=$(readelf -l "$bin" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p'); \
    [ -e "$r$interp" ] || { echo "the binary's loader $interp is not in the image: fix the links above" >&2; exit 1; }; \
    for lib in $(readelf -d "$bin" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'); do \
      [ -e "$r/usr/lib/$gnu/$lib" ] || { echo "the binary needs $lib, which is not in the image: add it to RUNTIME_LIBS" >&2; exit 1; }; \
    done; \
    printf 'include /etc/ld.so.conf.d/*.conf\n' >"$r/etc/ld.so.conf"; \
    ldconfig -r "$r"; \
    cp /etc/debian_version "$r/etc/debian_version"; \
    cp /usr/lib/os-release "$r/etc/os-release"; \
    printf 'root:x:0:0:root:/root:/sbin/nologin\nexporter:x:65532:65532:exporter:/nonexistent:/sbin/nologin\n' >"$r/etc/passwd"; \
    printf 'root:x:0:\nexporter:x:65532:\n' >"$r/etc/group"; \
    copyright() { \
      for f in "$2/usr/share/doc/$1/copyright" /usr/share/doc/"$1"/copyright /usr/share/doc/gcc-*-base/copyright; do \
        if [ -f "$f" ]; then mkdir -p "$r/usr/share/doc/$1"; cp "$f" "$r/usr/share/doc/$1/"; return; fi; \
      done; echo "no copyright file for $1" >&2; exit 1; \
    }; \
    if [ -d /target/debs ]; then \
      for p in /target/debs/*.deb; do \
        name=$(dpkg-deb -f "$p" Package); \
        { dpkg-deb -f "$p"; echo "Status: install ok installed"; } >"$r/var/lib/dpkg/status.d/$name"; \
        copyright "$name" /target/root; \
      done; \
    else \
      for name in libc6 libgcc-s1; do \
        dpkg-query -s "$name" >"$r/var/lib/dpkg/status.d/$name"; \
        copyright "$name" ""; \
      done; \
    fi

# --target debug: the same binary on debian:bookworm-slim, for a shell and
# the usual tools. No RUN here, so a foreign architecture needs no emulation.
FROM ${RUNTIME_IMAGE} AS debug
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG RUNTIME_IMAGE
LABEL org.opencontainers.image.title="system-info-exporter" \
      org.opencontainers.image.description="Prometheus exporter for NVIDIA GPU metrics (NVML) and host statistics" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${RUNTIME_IMAGE}"
COPY --from=builder /rootfs/usr/local/bin/system-info-exporter /usr/local/bin/system-info-exporter
# The NVIDIA Container Toolkit mounts libnvidia-ml.so.1 from the host driver
# when these are set; nothing NVIDIA is baked into the image.
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=utility
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/system-info-exporter", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/system-info-exporter"]

# The default target: the minimal image.
FROM scratch AS minimal
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="system-info-exporter" \
      org.opencontainers.image.description="Prometheus exporter for NVIDIA GPU metrics (NVML) and host statistics" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="scratch"
COPY --from=builder /rootfs/ /
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=utility
USER 65532:65532
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/system-info-exporter", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/system-info-exporter"]

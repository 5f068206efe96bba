#!/usr/bin/env bash
# The arm64 image without Docker and without emulated build steps: builds the
# Dockerfile for TARGETARCH=arm64 with buildah against the stand-in base images
# (the builder runs natively and cross-compiles, as `docker buildx build
# --platform linux/arm64` does), then checks the minimal image's root: the
# binary and the libraries are AArch64, the loader is where the binary names it,
# the image is at most 15 MB; and it runs the binary from that root under
# qemu-aarch64, with the aarch64 NVML test double where the NVIDIA Container
# Toolkit puts the driver's: /health, host metrics, nvidia_nvml_up 1. Needs
# root, buildah, qemu-user, gcc-aarch64-linux-gnu, and network for the
# builder's apt-get and rustup (the cross toolchain is installed in the image).
#   make test-arm64
set -euo pipefail
cd "$(dirname "$0")/../.."
export BUILDAH_ISOLATION=chroot

fail() { echo "arm64-image-test: FAIL: $*" >&2; exit 1; }
say() { echo "arm64-image-test: $*" >&2; }

shared=${SHARED_CONTAINER_DIR:-../shared/container}
[[ -x $shared/make-base-images.sh ]] || fail "the stand-in image scripts are not in $shared; set SHARED_CONTAINER_DIR"
[[ $EUID -eq 0 ]] || fail "must run as root (buildah chroot isolation)"
for tool in buildah qemu-aarch64 aarch64-linux-gnu-gcc readelf curl; do
  command -v "$tool" >/dev/null ||
    fail "$tool is missing (apt-get install buildah qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross binutils curl)"
done
"$shared/make-base-images.sh" >&2

double=target/nvml-double-aarch64/libnvidia-ml.so.1
mkdir -p "$(dirname "$double")"
aarch64-linux-gnu-gcc -shared -fPIC -O2 -Wall -Werror -fvisibility=hidden \
  -o "$double" tests/nvml-double/*.c -lpthread

rust_version=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
image=localhost/system-info-exporter:test-arm64
say "building $image (TARGETARCH=arm64; base images replaced by stand-ins)"
t0=$EPOCHSECONDS
buildah bud --layers --format docker --pull=never \
  --build-arg "RUST_IMAGE=localhost/rust:$rust_version-slim-bookworm" \
  --build-arg RUNTIME_IMAGE=localhost/debian:bookworm-slim \
  --build-arg TARGETARCH=arm64 --build-arg REVISION=test \
  -t "$image" . >target/arm64-image-build.log 2>&1 ||
  fail "build failed: $(tail -n 30 target/arm64-image-build.log)"
say "built in $((EPOCHSECONDS - t0)) s"

ctr=$(buildah from --pull-never "$image")
mnt=$(buildah mount "$ctr")
app=""
cleanup() {
  [[ -n $app ]] && kill "$app" 2>/dev/null && wait "$app" 2>/dev/null
  buildah umount "$ctr" >/dev/null 2>&1 || true
  buildah rm "$ctr" >/dev/null 2>&1 || true
}
trap cleanup EXIT

bin=$mnt/usr/local/bin/system-info-exporter
machine() { readelf -h "$1" | sed -n 's/.*Machine: *//p'; }
for f in "$bin" "$mnt"/usr/lib/aarch64-linux-gnu/*.so*; do
  [[ $(machine "$f") == AArch64 ]] || fail "${f#"$mnt"} is $(machine "$f"), not AArch64"
done
interp=$(readelf -l "$bin" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
[[ -e $mnt$interp ]] || fail "the loader $interp is not in the image"
image_bytes=$(du -sb "$mnt" | cut -f1)
image_files=$(find "$mnt" ! -type d | wc -l)
say "image: $image_bytes bytes, $image_files files; binary $(machine "$bin"), loader $interp"
((image_bytes <= 15 * 1000 * 1000)) || fail "image is $image_bytes bytes, over 15 MB"

# The double where the toolkit mounts the driver's library on Debian-like images.
cp "$double" "$mnt/usr/lib/aarch64-linux-gnu/libnvidia-ml.so.1"
conf=$PWD/target/arm64-image-nvml.conf
printf 'gpu_count = 1\ngpu.0.temperature = 55\n' >"$conf"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# -L: the guest's loader, libraries and /etc/ld.so.cache come from the image.
NVML_DOUBLE_CONFIG=$conf qemu-aarch64 -L "$mnt" "$bin" --web.listen-address="127.0.0.1:$port" \
  >target/arm64-image-run.log 2>&1 &
app=$!
for _ in $(seq 600); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
  kill -0 "$app" 2>/dev/null || fail "the exporter exited: $(cat target/arm64-image-run.log)"
  sleep 0.1
done
metrics=""
for _ in $(seq 100); do
  metrics=$(curl -sf "http://127.0.0.1:$port/metrics" || true)
  grep -q '^nvidia_gpu_temperature_celsius{gpu="0"' <<<"$metrics" && break
  sleep 0.1
done
for pattern in '^host_info{' '^nvidia_nvml_up 1$' '^nvidia_gpu_temperature_celsius{gpu="0",uuid="[^"]*"} 55$'; do
  grep -q "$pattern" <<<"$metrics" || fail "no line matching '$pattern' in /metrics: $(grep -v '^#' <<<"$metrics" | head -20)"
done
kill -TERM "$app"
status=0; wait "$app" || status=$?
app=""
[[ $status -eq 0 ]] || fail "exit status $status after SIGTERM, expected 0"
say "passed"
echo "arm64-image-test: 1 passed, 0 failed"

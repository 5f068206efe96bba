#!/usr/bin/env bash
# Container test: builds Dockerfile with buildah against local stand-ins for
# the base images (no Docker engine or registry needed), then runs the image
# and checks it from the host: /health, the non-root user, the HEALTHCHECK,
# the image and binary sizes, NVML injected at run time as the NVIDIA
# Container Toolkit does, and a clean exit on SIGTERM. Needs root.
#   make container-test
# SHARED_CONTAINER_DIR points at the stand-in scripts (default ../shared/container).
set -euo pipefail
cd "$(dirname "$0")/../.."
export BUILDAH_ISOLATION=chroot

fail() { echo "container-test: FAIL: $*" >&2; exit 1; }
say() { echo "container-test: $*" >&2; }

shared=${SHARED_CONTAINER_DIR:-../shared/container}
[[ -x $shared/make-base-images.sh && -x $shared/run-image.sh ]] ||
  fail "the stand-in image scripts are not in $shared; set SHARED_CONTAINER_DIR"
[[ $EUID -eq 0 ]] || fail "must run as root (buildah chroot isolation)"
command -v curl >/dev/null || fail "curl is missing (apt-get install curl)"
double=$PWD/target/nvml-double/libnvidia-ml.so.1
[[ -f $double ]] || fail "$double is missing; run make nvml-double"

"$shared/make-base-images.sh"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
rust_version=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
image=localhost/system-info-exporter:test
say "building $image (base images replaced by stand-ins: localhost/rust:$rust_version-slim-bookworm, localhost/debian:bookworm-slim)"
buildah bud --layers --format docker --pull=never \
  --build-arg "RUST_IMAGE=localhost/rust:$rust_version-slim-bookworm" \
  --build-arg RUNTIME_IMAGE=localhost/debian:bookworm-slim \
  --build-arg "VERSION=$version" --build-arg REVISION=test \
  -t "$image" . >&2

# --- The image's configuration and sizes.
config() { buildah inspect --type image --format "$1" "$image"; }
[[ $(config '{{.Docker.Config.User}}') == exporter ]] || fail "image user is not 'exporter'"
config '{{.Docker.Config.ExposedPorts}}' | grep -q '8080/tcp' || fail "port 8080 is not exposed"
config '{{.Docker.Config.Env}}' | grep -q 'NVIDIA_VISIBLE_DEVICES=all' || fail "NVIDIA_VISIBLE_DEVICES is not set"
config '{{.Docker.Config.Env}}' | grep -q 'NVIDIA_DRIVER_CAPABILITIES=utility' || fail "NVIDIA_DRIVER_CAPABILITIES is not set"
config '{{.Docker.Config.Healthcheck.Test}}' | grep -q 'healthcheck' || fail "HEALTHCHECK does not use the healthcheck subcommand"
[[ $(config '{{index .Docker.Config.Labels "org.opencontainers.image.version"}}') == "$version" ]] || fail "OCI version label"
ctr=$(buildah from --pull-never "$image")
mnt=$(buildah mount "$ctr")
# The unpacked root filesystem: what `docker images` reports as the size.
image_bytes=$(du -sb "$mnt" | cut -f1)
binary_bytes=$(stat -c %s "$mnt/usr/local/bin/system-info-exporter")
file_info=$(file -b "$mnt/usr/local/bin/system-info-exporter" 2>/dev/null || true)
buildah umount "$ctr" >/dev/null; buildah rm "$ctr" >/dev/null
say "image: $image_bytes bytes ($(buildah images --format "{{.Size}}" "$image") as buildah reports it); binary: $binary_bytes bytes ${file_info:+($file_info)}"
((image_bytes < 90 * 1000 * 1000)) || fail "image is $image_bytes bytes, over 90 MB"
((binary_bytes < 10 * 1024 * 1024)) || fail "binary is $binary_bytes bytes, over 10 MiB"

# --- Running it. The stand-in runner shares the host network, so pick a free
# port and bake it into a derived image: the HEALTHCHECK then sees it too,
# as it would see `docker run -e SIE_WEB_LISTEN_ADDRESS=...`.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ctr=$(buildah from --pull-never "$image")
buildah config --env "SIE_WEB_LISTEN_ADDRESS=127.0.0.1:$port" "$ctr"
buildah commit -q --format docker --rm "$ctr" "$image-port" >/dev/null
trap 'kill "${app:-}" 2>/dev/null || true; wait 2>/dev/null || true; buildah rmi "$image-port" >/dev/null 2>&1 || true' EXIT

# start NAME [run-image options]: starts the image, waits for /health, sets $app.
start() {
  local name=$1 t0; shift
  t0=$EPOCHREALTIME
  "$shared/run-image.sh" --name "$name" "$@" "$image-port" >"target/$name.log" 2>&1 &
  app=$!
  until curl -sf "http://127.0.0.1:$port/health" >/dev/null; do
    kill -0 "$app" 2>/dev/null || fail "$name exited early: $(cat "target/$name.log")"
    sleep 0.05
  done
  say "$name: /health answered $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }') s after start (stand-in runner)"
}

stop() {
  kill -TERM "$app"
  local status=0
  wait "$app" || status=$?
  app=""
  [[ $status -eq 0 ]] || fail "exit status $status after SIGTERM, expected 0"
}

metrics() { curl -sf "http://127.0.0.1:$port/metrics"; }
wait_metric() {  # wait_metric PATTERN: until a scrape has a line matching PATTERN
  for _ in $(seq 100); do metrics | grep -q "$1" && return 0; sleep 0.1; done
  fail "no line matching '$1' in /metrics: $(metrics | grep -v '^#' | head -20)"
}

# 1. No GPU: host metrics and nvidia_nvml_up 0.
start sie-no-gpu
wait_metric '^host_info{'
wait_metric '^nvidia_nvml_up 0$'
uid=""
for pid in $(pgrep -f /usr/local/bin/system-info-exporter); do
  if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "SIE_WEB_LISTEN_ADDRESS=127.0.0.1:$port"; then
    uid=$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status")
  fi
done
[[ -n $uid ]] || fail "cannot find the exporter process"
[[ $uid -ne 0 ]] || fail "the exporter runs as root"
say "the exporter runs as uid $uid"
"$shared/run-image.sh" --check sie-no-gpu >/dev/null || fail "HEALTHCHECK failed"
stop

# 2. NVML injected at run time where the NVIDIA Container Toolkit puts it.
conf=$PWD/target/container-test-nvml.conf
printf 'gpu_count = 2\ngpu.1.temperature = 66\n' >"$conf"
start sie-gpu -v "$double:/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1:ro" \
  -v "$conf:/etc/nvml-double.conf:ro" -e NVML_DOUBLE_CONFIG=/etc/nvml-double.conf
wait_metric '^nvidia_nvml_up 1$'
wait_metric '^nvidia_gpu_temperature_celsius{gpu="1",uuid="[^"]*"} 66$'
"$shared/run-image.sh" --check sie-gpu >/dev/null || fail "HEALTHCHECK failed"
stop

say "passed"
echo "container-test: 1 passed, 0 failed"

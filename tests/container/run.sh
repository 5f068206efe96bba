#!/usr/bin/env bash
# Container test: builds Dockerfile with buildah against local stand-ins for
# the base images (no Docker engine or registry needed), then runs the image
# and checks it from the host: the minimal image's contents (no shell, no
# package manager, under 15 MB, the embedded dependency list), /health, the
# non-root user, the HEALTHCHECK with the port moved by variable and by flag,
# NVML injected at run time as the NVIDIA Container Toolkit does (mounted into
# the multiarch directory, and in another directory registered through
# /etc/ld.so.conf.d and the host's ldconfig), a clean exit on SIGTERM, and the
# debug target. Needs root.
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
command -v readelf >/dev/null || fail "readelf is missing (apt-get install binutils)"
command -v ldconfig >/dev/null || fail "ldconfig is missing (apt-get install libc-bin)"
double=$PWD/target/nvml-double/libnvidia-ml.so.1
[[ -f $double ]] || fail "$double is missing; run make nvml-double"

"$shared/make-base-images.sh"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
rust_version=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
image=localhost/system-info-exporter:test
standins=(--build-arg "RUST_IMAGE=localhost/rust:$rust_version-slim-bookworm"
  --build-arg RUNTIME_IMAGE=localhost/debian:bookworm-slim)
say "building $image (base images replaced by stand-ins: localhost/rust:$rust_version-slim-bookworm, localhost/debian:bookworm-slim)"
buildah bud --layers --format docker --pull=never "${standins[@]}" \
  --build-arg "VERSION=$version" --build-arg REVISION=test \
  -t "$image" . >&2

# --- The image's configuration, contents and sizes.
config() { buildah inspect --type image --format "$1" "${2:-$image}"; }
[[ $(config '{{.Docker.Config.User}}') == 65532:65532 ]] || fail "image user is not 65532:65532 (numeric, for runAsNonRoot)"
config '{{.Docker.Config.ExposedPorts}}' | grep -q '8080/tcp' || fail "port 8080 is not exposed"
config '{{.Docker.Config.Env}}' | grep -q 'NVIDIA_VISIBLE_DEVICES=all' || fail "NVIDIA_VISIBLE_DEVICES is not set"
config '{{.Docker.Config.Env}}' | grep -q 'NVIDIA_DRIVER_CAPABILITIES=utility' || fail "NVIDIA_DRIVER_CAPABILITIES is not set"
[[ $(config '{{.Docker.Config.Healthcheck.Test}}') == "[CMD /usr/local/bin/system-info-exporter healthcheck]" ]] ||
  fail "HEALTHCHECK is not the exec form of the healthcheck subcommand (the image has no shell)"
[[ $(config '{{index .Docker.Config.Labels "org.opencontainers.image.version"}}') == "$version" ]] || fail "OCI version label"
ctr=$(buildah from --pull-never "$image")
mnt=$(buildah mount "$ctr")
# The unpacked root filesystem: what `docker images` reports as the size.
image_bytes=$(du -sb "$mnt" | cut -f1)
image_files=$(find "$mnt" ! -type d | wc -l)
bin=$mnt/usr/local/bin/system-info-exporter
binary_bytes=$(stat -c %s "$bin")
file_info=$(file -b "$bin" 2>/dev/null || true)
contents=$(cd "$mnt" && find . ! -type d | sort)
for f in bin/sh usr/bin/sh usr/bin/dash usr/bin/bash usr/bin/apt usr/bin/dpkg usr/sbin/ldconfig sbin/ldconfig; do
  [[ ! -e $mnt/$f ]] || fail "the minimal image has /$f"
done
# The loader the binary names, the files the NVIDIA Container Toolkit and
# scanners read, and the dependency list cargo-auditable embeds.
interp=$(readelf -l "$bin" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
[[ -e $mnt$interp ]] || fail "the loader $interp is missing"
for f in etc/ld.so.conf etc/ld.so.cache etc/debian_version etc/passwd var/lib/dpkg/status.d/libc6 \
  usr/lib/x86_64-linux-gnu/libpthread.so.0 usr/lib/x86_64-linux-gnu/libdl.so.2 usr/lib/x86_64-linux-gnu/librt.so.1; do
  [[ -e $mnt/$f ]] || fail "the minimal image lacks /$f"
done
grep -qx 'include /etc/ld.so.conf.d/\*.conf' "$mnt/etc/ld.so.conf" || fail "/etc/ld.so.conf does not include /etc/ld.so.conf.d"
readelf -S "$bin" | grep -q '\.dep-v0' || fail "the binary has no .dep-v0 section (cargo auditable build)"
buildah umount "$ctr" >/dev/null; buildah rm "$ctr" >/dev/null
say "image: $image_bytes bytes, $image_files files ($(buildah images --format "{{.Size}}" "$image") as buildah reports it); binary: $binary_bytes bytes ${file_info:+($file_info)}"
say "image contents: $(echo $contents)"
((image_bytes <= 15 * 1000 * 1000)) || fail "image is $image_bytes bytes, over 15 MB"
((binary_bytes < 10 * 1024 * 1024)) || fail "binary is $binary_bytes bytes, over 10 MiB"

# --- Running it. The stand-in runner shares the host network, so every run
# listens on a free loopback port. Derived images: "-env" has the port in
# SIE_WEB_LISTEN_ADDRESS (as `docker run -e` would set it); "-ldconf" has the
# NVML test double in a directory the loader does not search, registered the
# way the toolkit's CDI hook does it (a file in /etc/ld.so.conf.d, then the
# host's ldconfig run on the container's root); "-nocache" is the same without
# ldconfig, the negative control.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
derived=()
cleanup() {
  kill "${app:-}" 2>/dev/null || true; wait 2>/dev/null || true
  for d in "${derived[@]}"; do buildah rmi "$d" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT
derive() {  # derive SUFFIX [ldconfig]: sets up "$image-SUFFIX"
  local c m
  c=$(buildah from --pull-never "$image")
  buildah config --env "SIE_WEB_LISTEN_ADDRESS=127.0.0.1:$port" "$c"
  if [[ $1 != env ]]; then
    m=$(buildah mount "$c")
    mkdir -p "$m/opt/nvml-test/lib"
    cp "$double" "$m/opt/nvml-test/lib/libnvidia-ml.so.1"
    echo /opt/nvml-test/lib >"$m/etc/ld.so.conf.d/00-nvcr-test.conf"
    [[ ${2:-} == ldconfig ]] && ldconfig -r "$m" -f /etc/ld.so.conf -C /etc/ld.so.cache
    buildah umount "$c" >/dev/null
  fi
  buildah commit -q --format docker --rm "$c" "$image-$1" >/dev/null
  derived+=("$image-$1")
}
derive env
derive ldconf ldconfig
derive nocache

# start NAME IMAGE [run-image options] [-- ARGS]: starts the image, waits for /health, sets $app.
start() {
  local name=$1 img=$2 t0 opts=()
  shift 2
  while (($#)) && [[ $1 != -- ]]; do opts+=("$1"); shift; done
  t0=$EPOCHREALTIME
  "$shared/run-image.sh" --name "$name" "${opts[@]}" "$img" "$@" >"target/$name.log" 2>&1 &
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
healthy() {  # healthy NAME WHAT: the image's HEALTHCHECK passes in container NAME, on $port
  "$shared/run-image.sh" --check "$1" >"target/$1-check.log" 2>&1 ||
    fail "HEALTHCHECK failed with $2: $(cat "target/$1-check.log")"
  grep -q "http://127.0.0.1:$port/health" "target/$1-check.log" ||
    fail "HEALTHCHECK did not check port $port with $2: $(cat "target/$1-check.log")"
}

# 1. No GPU, port moved by the variable: host metrics, nvidia_nvml_up 0, not root.
start sie-no-gpu "$image-env"
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
healthy sie-no-gpu "the port in SIE_WEB_LISTEN_ADDRESS"
stop

# 2. Port moved on the command line only, as a new user would:
#    docker run IMAGE --web.listen-address=...; the HEALTHCHECK must follow it.
start sie-flag "$image" -- "--web.listen-address=127.0.0.1:$port"
healthy sie-flag "the port in --web.listen-address"
stop

# 3. NVML mounted where the toolkit puts it on Debian-like images (legacy mode
#    mounts into the multiarch directory because /etc/debian_version exists).
conf=$PWD/target/container-test-nvml.conf
printf 'gpu_count = 2\ngpu.1.temperature = 66\n' >"$conf"
nvml=(-v "$conf:/etc/nvml-double.conf:ro" -e NVML_DOUBLE_CONFIG=/etc/nvml-double.conf)
start sie-gpu "$image-env" -v "$double:/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1:ro" "${nvml[@]}"
wait_metric '^nvidia_nvml_up 1$'
wait_metric '^nvidia_gpu_temperature_celsius{gpu="1",uuid="[^"]*"} 66$'
healthy sie-gpu "NVML injected"
stop

# 4. NVML in another directory, found through /etc/ld.so.conf.d and the
#    linker cache that the host's ldconfig wrote into the image's root.
start sie-ldconf "$image-ldconf" "${nvml[@]}"
wait_metric '^nvidia_nvml_up 1$'
wait_metric '^nvidia_gpu_temperature_celsius{gpu="1",uuid="[^"]*"} 66$'
stop
start sie-nocache "$image-nocache" "${nvml[@]}"
wait_metric '^nvidia_nvml_up 0$'
stop
say "NVML found through /etc/ld.so.conf.d after ldconfig, and not without it"

# 5. The debug target: the same binary on the Debian runtime, with a shell.
say "building $image-debug (--target debug)"
buildah bud --layers --format docker --pull=never "${standins[@]}" --target debug \
  --build-arg "VERSION=$version" --build-arg REVISION=test \
  -t "$image-debug" . >&2
derived+=("$image-debug")
[[ $(config '{{.Docker.Config.User}}' "$image-debug") == 65532:65532 ]] || fail "debug image user is not 65532:65532"
"$shared/run-image.sh" --entrypoint /bin/sh "$image-debug" -- -c \
  "/usr/local/bin/system-info-exporter --version" >target/sie-debug.log 2>&1 ||
  fail "the debug image has no working shell or binary: $(cat target/sie-debug.log)"
grep -q "system-info-exporter $version" target/sie-debug.log || fail "debug image: $(cat target/sie-debug.log)"
start sie-debug "$image-debug" -- "--web.listen-address=127.0.0.1:$port"
healthy sie-debug "the port in --web.listen-address (debug image)"
stop

say "passed"
echo "container-test: 1 passed, 0 failed"

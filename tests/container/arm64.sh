#!/usr/bin/env bash
# arm64 without Docker: cross-builds the release binary and the NVML test
# double for aarch64 (Debian's gcc-aarch64-linux-gnu, the Rust target
# aarch64-unknown-linux-gnu), checks that both are AArch64 ELF files, then runs
# the exporter under user-mode QEMU (Debian's qemu-user) against the double and
# checks a subset of the end-to-end behaviour over HTTP: /health, host metrics,
# NVML up with the double's GPUs and readings, the healthcheck subcommand, and
# exit status 0 on SIGTERM.
#   make test-arm64
# Needs: gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user curl (apt), and
# the Rust standard library for aarch64 (rustup target add
# aarch64-unknown-linux-gnu), which rustup downloads from the Rust project's
# servers: where those are unreachable this test fails and says so.
set -euo pipefail
cd "$(dirname "$0")/../.."

fail() { echo "arm64-test: FAIL: $*" >&2; exit 1; }
say() { echo "arm64-test: $*" >&2; }

target=aarch64-unknown-linux-gnu
for tool in aarch64-linux-gnu-gcc qemu-aarch64 curl readelf; do
  command -v "$tool" >/dev/null ||
    fail "$tool is missing (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user curl binutils)"
done
sysroot=/usr/aarch64-linux-gnu
[[ -e $sysroot/lib/ld-linux-aarch64.so.1 ]] || fail "no aarch64 glibc in $sysroot (apt-get install libc6-dev-arm64-cross)"

aarch64() {  # aarch64 FILE: the ELF machine is AArch64
  readelf -h "$1" | grep -q 'Machine:.*AArch64' || fail "$1 is not an AArch64 ELF file: $(readelf -h "$1" | grep Machine)"
}

# 1. The NVML test double, cross-compiled.
double=target/nvml-double-aarch64/libnvidia-ml.so.1
mkdir -p "$(dirname "$double")"
aarch64-linux-gnu-gcc -shared -fPIC -O2 -Wall -Werror -fvisibility=hidden \
  -o "$double" tests/nvml-double/*.c -lpthread
aarch64 "$double"
say "NVML test double: $(readelf -h "$double" | sed -n 's/.*Machine: *//p')"

# 2. The release binary, cross-compiled as the Dockerfile does.
libdir=$(rustc --print target-libdir --target "$target" 2>/dev/null || true)
if ! compgen -G "$libdir/libstd-*.rlib" >/dev/null; then
  if command -v rustup >/dev/null; then
    rustup target add "$target" >&2 ||
      fail "the Rust standard library for $target is not installed and 'rustup target add $target' failed (it downloads from the Rust project's servers)"
  else
    fail "the Rust standard library for $target is not installed (rustup target add $target)"
  fi
fi
CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
  cargo build --release --locked --target "$target" --bin system-info-exporter >&2
bin=target/$target/release/system-info-exporter
aarch64 "$bin"
say "exporter: $(readelf -h "$bin" | sed -n 's/.*Machine: *//p')"

# 3. Running it under QEMU against the double.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
conf=$PWD/target/arm64-test-nvml.conf
printf 'gpu_count = 2\ngpu.1.temperature = 66\n' >"$conf"
# Started directly, not through a function: SIGTERM must reach QEMU itself,
# which passes it on to the exporter.
NVML_DOUBLE_CONFIG=$conf qemu-aarch64 -L "$sysroot" "$bin" \
  --web.listen-address="127.0.0.1:$port" --nvml.library="$PWD/$double" >target/arm64-test.log 2>&1 &
app=$!
trap 'kill "$app" 2>/dev/null || true' EXIT
for _ in $(seq 600); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
  kill -0 "$app" 2>/dev/null || fail "the exporter exited: $(cat target/arm64-test.log)"
  sleep 0.1
done
metrics=$(curl -sf "http://127.0.0.1:$port/metrics") || fail "no /metrics"
for _ in $(seq 100); do
  grep -q '^nvidia_gpu_temperature_celsius{gpu="1"' <<<"$metrics" && break
  sleep 0.1; metrics=$(curl -sf "http://127.0.0.1:$port/metrics")
done
for pattern in '^host_info{' '^nvidia_nvml_up 1$' '^nvidia_gpus 2$' \
  '^nvidia_gpu_temperature_celsius{gpu="1",uuid="[^"]*"} 66$'; do
  grep -q "$pattern" <<<"$metrics" || fail "no line matching '$pattern' in /metrics: $(grep -v '^#' <<<"$metrics" | head -20)"
done
# Under QEMU /proc/PID/exe names qemu, not the binary, so the check is given the address.
qemu-aarch64 -L "$sysroot" "$bin" healthcheck --url "http://127.0.0.1:$port/health" >/dev/null ||
  fail "healthcheck failed under QEMU"
kill -TERM "$app"
status=0; wait "$app" || status=$?
trap - EXIT
[[ $status -eq 0 ]] || fail "exit status $status after SIGTERM, expected 0: $(tail -5 target/arm64-test.log)"
say "passed"
echo "arm64-test: 1 passed, 0 failed"

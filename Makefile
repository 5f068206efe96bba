# system-info-exporter: build, test and package.
#   make run            run the exporter (host metrics; NVML if the driver is there)
#   make test           every test: Rust unit and end-to-end tests, the container test, the arm64 test
#   make test-gpu       the acceptance run on a machine with an NVIDIA GPU (tests/gpu/acceptance.py)
#   make lint           rustfmt and clippy, warnings are errors

CARGO    ?= cargo
VERSION  := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
REVISION := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
export SIE_REVISION := $(REVISION)

.PHONY: build run test test-rust test-gpu lint bench bench-resources bench-collectors bench-series bench-peers nvml-double

build:
	$(CARGO) build --release

run:
	$(CARGO) run --release

test: test-rust container-test test-arm64

# Unit tests, the end-to-end tests against the NVML test double, and one
# pass of each benchmark so that they keep working.
test-rust:
	$(CARGO) test --all-targets

# The acceptance run on a machine with an NVIDIA GPU (never part of `test`):
# the release binary against the real driver, every reading compared with
# nvidia-smi and NVML, a short GPU load, the exporter's cost; report.txt and
# report.json in $$OUT, else target/gpu-run. Without a GPU it skips with one line.
test-gpu: build
	python3 tests/gpu/acceptance.py --binary $(or $(CARGO_TARGET_DIR),target)/release/system-info-exporter

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

# The NVML test double, for running the exporter by hand:
#   make nvml-double && NVML_DOUBLE_CONFIG=my.conf cargo run -- --nvml.library=target/nvml-double/libnvidia-ml.so.1
nvml-double: target/nvml-double/libnvidia-ml.so.1
target/nvml-double/libnvidia-ml.so.1: $(wildcard tests/nvml-double/*.c tests/nvml-double/*.h)
	mkdir -p $(dir $@)
	$(CC) -shared -fPIC -O2 -Wall -Werror -fvisibility=hidden -o $@ $(filter %.c,$^) -lpthread

bench:
	$(CARGO) bench --bench collect

bench-resources: build nvml-double
	benches/resources.py target/release/system-info-exporter target/nvml-double/libnvidia-ml.so.1

# Cost per collection of each collector, the opt-in processes collector included.
bench-collectors: build nvml-double
	benches/collectors.py target/release/system-info-exporter target/nvml-double/libnvidia-ml.so.1

# Series per GPU and per 8-GPU node for each NVLink detail, with and without
# GPM and processes, and the gzip body against gzip -9 (docs/deployment.md).
bench-series: build nvml-double
	benches/series.py target/release/system-info-exporter target/nvml-double/libnvidia-ml.so.1

# This exporter against nginx serving its saved body, node_exporter,
# nvitop-exporter and all-smi, where installed (docs/performance.md).
bench-peers: build nvml-double
	benches/peers --json target/peers.json

# ---- Container image -------------------------------------------------------
# ENGINE: docker (BuildKit), podman or buildah. BUILD_ARGS: e.g.
#   BUILD_ARGS="--build-arg RUST_IMAGE=mirror.example/rust:1.95-slim-bookworm"
ENGINE     ?= docker
IMAGE      ?= system-info-exporter
BUILD_ARGS ?=
ENGINE_BUILD = $(if $(filter buildah,$(ENGINE)),buildah bud --layers --format docker,$(if $(filter podman,$(ENGINE)),podman build --format docker,DOCKER_BUILDKIT=1 docker build))
# The commit's time: BuildKit stamps the image with it, and any build script
# that reads SOURCE_DATE_EPOCH gets it instead of the clock.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
IMAGE_ARGS = --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) \
	--build-arg SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(BUILD_ARGS)
PLATFORMS ?= linux/amd64,linux/arm64

.PHONY: docker-build docker-build-debug docker-build-multiarch docker-build-original docker-run bench-docker container-test

# The minimal image (the default target).
docker-build:
	$(ENGINE_BUILD) $(IMAGE_ARGS) -t $(IMAGE):$(VERSION) .

# The same binary on debian:bookworm-slim, with a shell: $(IMAGE):$(VERSION)-debug.
docker-build-debug:
	$(ENGINE_BUILD) $(IMAGE_ARGS) --target debug -t $(IMAGE):$(VERSION)-debug .

# Both architectures, cross-compiled on the build machine (no QEMU), with
# docker buildx; add BUILDX_ARGS=--push to push the multi-platform manifest
# (buildx's default docker driver cannot load one into the local image store).
BUILDX_ARGS ?=
docker-build-multiarch:
	docker buildx build --platform $(PLATFORMS) $(IMAGE_ARGS) $(BUILDX_ARGS) -t $(IMAGE):$(VERSION) .

# The slow CUDA-devel baseline, for comparison only (see Dockerfile.original).
docker-build-original:
	$(ENGINE_BUILD) $(BUILD_ARGS) -f Dockerfile.original -t $(IMAGE):$(VERSION)-original .

docker-run:
	$(ENGINE) run --rm --gpus all -p 8080:8080 $(IMAGE):$(VERSION)

# Times both Dockerfiles in every scenario; see benches/docker-build.
bench-docker:
	benches/docker-build --engine $(ENGINE) $(BUILD_ARGS)

# Builds the image with buildah against local stand-in base images, runs it and
# checks it (needs root; installs buildah and debootstrap if missing).
container-test: nvml-double
	tests/container/run.sh

# arm64 without emulated builds: the aarch64 binary and NVML test double,
# cross-built and run under qemu-user (tests/container/arm64.sh); then the
# Dockerfile built for TARGETARCH=arm64 with buildah, its image root run under
# qemu-user (tests/container/arm64-image.sh, needs root).
.PHONY: test-arm64
test-arm64:
	tests/container/arm64.sh
	tests/container/arm64-image.sh

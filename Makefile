# The two commands a fresh machine needs: `make run` and `make test`.
# DATA points at the MNIST files; on this project's machines they sit in ../shared/data/mnist.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRA ?= cpu
DATA ?= ../shared/data/mnist
ARTIFACTS ?= artifacts
RUN_ARGS ?=
PYTEST_ARGS ?=
BENCH_ARGS ?=

# The container image. `image`: the GPU image on the Dockerfile's pinned base. `local-image`:
# the CPU variant on a Debian base made from Debian's archive (for machines that reach no
# container registry; needs root and debootstrap). CA_BUNDLE=FILE: an extra CA for pip in the
# build, never left in the image (docker/ca/README.md); by default the one the host's pip is
# told to trust (PIP_CERT), if any. DOCKER_UP= skips the container checks.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE ?= image-recognition-job:$(VERSION)
TEST_IMAGE ?= image-recognition-job:test
LOCAL_BASE ?= local/debian:bookworm
CA_BUNDLE ?= $(PIP_CERT)
DOCKER_UP ?= $(shell timeout 10 docker info >/dev/null 2>&1 && echo yes)
BUILD_IMAGE = CA_BUNDLE=$(CA_BUNDLE) docker/build.sh --network host --build-arg VERSION=$(VERSION) \
	--build-arg REVISION=$(shell git describe --always --dirty 2>/dev/null || echo unknown)

.PHONY: install run test bench bench-smoke image image-test clean
.PHONY: local-image bench-quality

$(BIN)/job: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[$(EXTRA),dev]'
	touch $@

install: $(BIN)/job  ## create the virtualenv and install the job with its test tools

run: install  ## the quick budget on the full MNIST: search, retrain, evaluate, visualize
	$(BIN)/job run --data $(DATA) --artifacts $(ARTIFACTS) $(RUN_ARGS)

test: install $(if $(DOCKER_UP),local-image)  ## every test; needs the MNIST files in $(DATA); with Docker up, the container checks too
	JOB_TEST_DATA=$(abspath $(DATA)) $(if $(DOCKER_UP),JOB_TEST_IMAGE=$(TEST_IMAGE)) $(BIN)/pytest $(PYTEST_ARGS)

image:  ## the GPU image (TensorFlow with CUDA from pip) on its pinned default base
	$(BUILD_IMAGE) -t $(IMAGE)

local-image:
	docker image inspect $(LOCAL_BASE) >/dev/null 2>&1 || docker/local-base.sh $(LOCAL_BASE)
	$(BUILD_IMAGE) --build-arg BASE_IMAGE=$(LOCAL_BASE) --build-arg TF_EXTRA=cpu -t $(TEST_IMAGE)

image-test: install local-image  ## the CPU image on a local Debian base, then the container checks
	JOB_TEST_DATA=$(abspath $(DATA)) JOB_TEST_IMAGE=$(TEST_IMAGE) $(BIN)/pytest tests/test_container.py $(PYTEST_ARGS)

bench: install  ## speed and memory vs the original script (~55 min on 2 cores): tables, bench/results/*.json, BENCHMARKS.md
	$(BIN)/python -m bench --data $(DATA) $(BENCH_ARGS)

bench-quality: install  ## the full profile's test accuracy on 3 seeds (about 1 h on 2 cores)
	$(BIN)/python -m bench --data $(DATA) quality $(BENCH_ARGS)

bench-smoke: install  ## every benchmark on a tiny subset: checks the plumbing, not the numbers
	$(BIN)/python -m bench --data $(DATA) --smoke $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info

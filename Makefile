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

.PHONY: install run test bench bench-smoke image image-test clean

$(BIN)/job: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[$(EXTRA),dev]'
	touch $@

install: $(BIN)/job  ## create the virtualenv and install the job with its test tools

run: install  ## the quick budget on the full MNIST: search, retrain, evaluate, visualize
	$(BIN)/job run --data $(DATA) --artifacts $(ARTIFACTS) $(RUN_ARGS)

test: install  ## every test; needs the MNIST files in $(DATA)
	JOB_TEST_DATA=$(abspath $(DATA)) $(BIN)/pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info

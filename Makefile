# imgserve: the two commands are `make serve` and `make test` (see README).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PORT ?= 3000
PYTEST_ARGS ?=

.PHONY: serve test setup-serve setup-all system-deps default-model lint bench-quant clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

## Serve-only environment: TF-free (bentoml, onnxruntime, pillow, numpy…).
setup-serve: $(PY)
	$(PIP) install -q -e '.[serve]'

## Everything: serve + train (TensorFlow, tf2onnx) + bench + dev tools, and the Debian data set.
setup-all: $(PY) system-deps
	$(PIP) install -q -e '.[all]'

## Debian packages the project uses: Fashion-MNIST IDX files; chromium + chromium-driver for the dashboard's
## browser tests (apt, needs root or sudo).
system-deps:
	@if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then \
	  echo "dataset-fashion-mnist: present"; \
	else \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq dataset-fashion-mnist; \
	fi
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then \
	  echo "chromium, chromium-driver: present"; \
	else \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver; \
	fi

## First command: set up and serve the default (shipped) model on http://127.0.0.1:$(PORT).
serve: setup-serve
	$(VENV)/bin/imgserve serve --port $(PORT)

## Second command: set up everything and run the test suite. pytest's "no tests collected" (5) is not a failure.
test: setup-all
	@set +e; $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; rc=0; fi; exit $$rc

## Reproduce the shipped default model (Fashion-MNIST CNN): train, then export + register.
default-model: setup-all
	$(VENV)/bin/imgserve train --dataset fashion-mnist --arch small-cnn --out runs/fashion-mnist
	$(VENV)/bin/imgserve export runs/fashion-mnist --name fashion-mnist

lint: $(PY)
	$(VENV)/bin/ruff check .

clean:
	rm -rf build dist *.egg-info .pytest_cache runs

# imgserve: the two commands are `make serve` and `make test` (see README).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PORT ?= 3000
PYTEST_ARGS ?=

.PHONY: serve test setup-serve setup-all system-deps default-model replicas-demo lint bench-quant clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

## Serve-only environment: TF-free (bentoml, onnxruntime, pillow, numpy…).
setup-serve: $(PY)
	$(PIP) install -q -e '.[serve]'

## Everything: serve + train (TensorFlow, tf2onnx) + bench + dev tools, and the Debian data set.
setup-all: $(PY) system-deps
	$(PIP) install -q -e '.[all]'

## Debian packages the tests and benchmarks use (apt, needs root or sudo): Fashion-MNIST IDX files; chromium +
## chromium-driver for the dashboard's browser tests; wrk and nghttp2-client (h2load), the C load generators of the
## benchmarks (HTTP and OIP gRPC); haproxy, the load balancer of the replica test (run as a plain process, never
## as the system service); prometheus for
## promtool, which tests deploy/prometheus/'s alert rules (on a host with systemd the package also starts a
## Prometheus server on :9090). One list: a new tool is one word here.
DEBIAN_PACKAGES := dataset-fashion-mnist chromium chromium-driver wrk nghttp2-client haproxy prometheus

system-deps:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then echo "Debian packages present: $(DEBIAN_PACKAGES)"; else \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
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
	$(VENV)/bin/imgserve train --dataset fashion-mnist --arch vgg3 --epochs 24 --batch-size 128 --seed 0 \
	    --label-smoothing 0.1 --time-budget-min 14 --precision bfloat16 --augment --tta-flip \
	    --out runs/fashion-mnist-v3
	$(VENV)/bin/imgserve export runs/fashion-mnist-v3 --name fashion-mnist --quantization default \
	    --calibration-size 500

## Three `bentoml serve` replicas behind HAProxy on one S3 registry (a local moto_server), with the admin runner,
## under steady load: promote, rolling restart (SIGTERM), kill -9, rollback; prints the timeline and the counts
## (docs/deploying.md).
## The e2e test tests/e2e/test_replicas.py runs the same.
replicas-demo: setup-all
	$(PY) -m deploy.replicas --moto

lint: $(PY)
	$(VENV)/bin/ruff check .

clean:
	rm -rf build dist *.egg-info .pytest_cache runs

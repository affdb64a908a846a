# The two set-up commands: `make demo` (main job on an embedded local Ray with generated sample data)
# and `make test`. Both create or update .venv from pyproject.toml first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= runs/demo
# The optional dependency groups installed into .venv; GPU machines: make venv EXTRAS=test,lint,gpu
EXTRAS ?= test,lint
comma := ,
STAMP := $(VENV)/.faceray-installed-$(subst $(comma),-,$(EXTRAS))
# Keep every Ray connection on loopback and send no usage statistics.
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER = 0
export RAY_USAGE_STATS_ENABLED = 0

.PHONY: venv demo test test-fast lint format docs bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "faceray needs Python 3.11+")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# Older environments had tensorflow-cpu; it and tensorflow share files, so remove both before installing one.
	@if $(BIN)/python -m pip show -q tensorflow-cpu 2>/dev/null; then \
		echo "replacing tensorflow-cpu by tensorflow"; $(BIN)/python -m pip uninstall -y -q tensorflow-cpu tensorflow; fi
	@echo "installing faceray and its dependencies into $(VENV) (about 1.5 GB; several minutes on a fresh machine)"
	$(BIN)/python -m pip install --progress-bar off -e ".[$(EXTRAS)]"
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/faceray demo --out $(DEMO_OUT)

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@# the installed layout for mypy: faceray/ with the stage folders as faceray.<stage> (links, rebuilt each time)
	rm -rf .typecheck && mkdir -p .typecheck/faceray && cp -rs $(CURDIR)/faceray/. .typecheck/faceray/
	for stage in ingest train serve cluster; do ln -s $(CURDIR)/$$stage .typecheck/faceray/$$stage; done
	$(BIN)/mypy

docs: $(STAMP)
	$(BIN)/mkdocs build --strict --quiet

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

bench: $(STAMP)
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/sweep.py
	$(BIN)/python bench/serve.py
	$(BIN)/python bench/serve_faults.py
	$(BIN)/python bench/object_storage.py
	$(BIN)/python bench/verify.py
	$(BIN)/python bench/train_scale.py
	$(BIN)/python bench/soak.py
	@# installs fer 22.5.1 (no dependencies beyond its imports) into ~/.cache/faceray/bench-fer for this bench only
	$(BIN)/python bench/analyze.py
	@# needs Debian's chromium and chromium-driver (.ci/run installs them); skipped with a message otherwise
	-$(BIN)/python bench/browser.py
	@# needs an NVIDIA GPU and `make venv EXTRAS=test,lint,gpu`; skipped without nvidia-smi
	-command -v nvidia-smi >/dev/null && $(BIN)/python bench/train_gpu.py

clean:
	rm -rf runs .pytest_cache

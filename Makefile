# Two commands on a fresh clone: `make demo` (run the main job) and `make test`.
# Both create .venv with the project installed when it is missing or pyproject.toml changed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo ops-demo test lint format bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The main job: train the embedded default (SDNet on scikit-learn's digits) and evaluate it.
demo: $(STAMP)
	$(PY) -m sdnet_jax.main --config=configs/digits_sdnet.py --workdir=workdir/digits_sdnet

ops-demo: $(STAMP)
	$(PY) -m sdnet_jax.demo

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)
	$(PY) -m benchmarks.solver_cost

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

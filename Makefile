# Two commands on a fresh clone: `make demo` (run the main job) and `make test`.
# Both create .venv with the project installed when it is missing or pyproject.toml changed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo ops-demo test test-quick lint format bench clean lock wheelhouse gpu-bundle

# constraints.txt pins the versions CI tested (see `make lock`).
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Re-resolve constraints.txt from pyproject.toml's open ranges in a fresh venv (then run make test).
LOCK_VENV := .lock-venv
lock:
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install --quiet -e '.[dev]'
	head -n 4 constraints.txt > constraints.txt.new
	$(LOCK_VENV)/bin/python -m pip freeze --exclude-editable >> constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf $(LOCK_VENV)

# The main job: train the embedded default (SDNet on scikit-learn's digits) and evaluate it.
# DEMO_ARGS adds flags, e.g. make demo DEMO_ARGS="--config.num_epochs=1" (what CI runs).
DEMO_ARGS ?=
demo: $(STAMP)
	$(PY) -m sdnet_jax.main --config=configs/digits_sdnet.py --workdir=workdir/digits_sdnet $(DEMO_ARGS)

ops-demo: $(STAMP)
	$(PY) -m sdnet_jax.demo

# Two workers (pytest-xdist; the tests that share the trained tiny models stay on one of them).
TEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

# The quick loop while editing: everything but subprocesses, notebooks and multi-process runs.
test-quick: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Performance tables (README "Benchmarks"): each script prints ratios and writes bench_out/<name>.json;
# benchmarks.report renders them all as markdown. Needs the optional 'bench' extra (PyTorch, SPORCO,
# jaxopt). Under 15 minutes on 2 cores.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) -m benchmarks.layer_cost
	$(PY) -m benchmarks.model_cost
	$(PY) -m benchmarks.backprop_memory
	$(PY) -m benchmarks.torch_reference
	$(PY) -m benchmarks.solver_accuracy
	$(PY) -m benchmarks.loop_overhead --json bench_out/loop_overhead.json
	$(PY) -m benchmarks.report bench_out > bench_out/report.md
	cat bench_out/report.md

# Offline install (launch/README.md, "GPU/TPU hosts without internet"): the wheels of everything
# the project needs beyond jax/jaxlib and their own requirements, build backend included, for
# CPython $(WHEELHOUSE_PYTHON) on manylinux x86_64; EXCLUDE_FREEZE=<a pip freeze of the target>
# leaves out what the target has. Then: pip install --no-index --find-links wheelhouse .
WHEELHOUSE ?= wheelhouse
WHEELHOUSE_PYTHON ?= $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
EXCLUDE_FREEZE ?=
wheelhouse: $(STAMP)
	$(PY) launch/wheelhouse.py --out $(WHEELHOUSE) --python-version $(WHEELHOUSE_PYTHON) \
		$(if $(EXCLUDE_FREEZE),--exclude-freeze $(EXCLUDE_FREEZE))

# What a GPU host without internet needs for benchmarks.reproduce (under 64 MiB): gpu_bundle/
gpu-bundle: $(STAMP)
	PY=$(PY) launch/gpu_bundle.sh gpu_bundle

clean:
	rm -rf $(VENV) $(LOCK_VENV) .pytest_cache .ruff_cache

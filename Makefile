# The README's two commands: `make run` serves, `make test` runs every check.
# Both create .venv (with the pinned versions in constraints.txt) when it is missing or stale.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= $(or $(XENT_HOST),127.0.0.1)
PORT   ?= $(or $(XENT_PORT),8000)

.PHONY: run test lint typecheck manifests pytest openapi fuzz bench bench-quick profile soak clean

# scripts/make_venv.py creates and updates .venv under a lock, so `make run &` and `make test` can start together.
$(VENV)/.installed-run: pyproject.toml constraints.txt
	$(PYTHON) scripts/make_venv.py $(VENV) run

$(VENV)/.installed-test: pyproject.toml constraints.txt
	$(PYTHON) scripts/make_venv.py $(VENV) test

run: $(VENV)/.installed-run
	$(BIN)/xent serve --host $(HOST) --port $(PORT)

test: lint typecheck manifests pytest

lint: $(VENV)/.installed-test
	$(BIN)/ruff check service tests benchmarks scripts
	$(BIN)/ruff format --check service tests benchmarks scripts

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

# The Kubernetes manifests, against the schemas that kubernetes-validate ships (offline).
K8S_MANIFESTS := $(filter-out %/kustomization.yaml,$(wildcard deploy/kubernetes/*.yaml))
manifests: $(VENV)/.installed-test
	$(BIN)/kubernetes-validate --strict --quiet $(K8S_MANIFESTS)

pytest: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

openapi: $(VENV)/.installed-run
	$(BIN)/xent openapi openapi/openapi.json

# The long schema fuzz (not part of `make test`, which runs a short one with a fixed seed): schemathesis
# against openapi/openapi.json and a real server, on both JSON paths, with a random seed it prints
# (XENT_FUZZ_SEED=N replays a run). About 2 minutes for 1000 examples per operation on 2 cores.
fuzz: $(VENV)/.installed-test
	XENT_FUZZ_EXAMPLES=$${XENT_FUZZ_EXAMPLES:-1000} XENT_FUZZ_SEED=$${XENT_FUZZ_SEED:-random} \
	XENT_FUZZ_SECONDS=$${XENT_FUZZ_SECONDS:-1800} \
	$(BIN)/python -m pytest -q -s -p no:cacheprovider tests/hostile/test_schema_fuzz.py

# Benchmarks (not part of `make test`): xent against a plain FastAPI baseline on loopback,
# every answer checked; `bench` rewrites benchmarks/RESULTS.md (about 5 minutes on 2 cores).
bench: $(VENV)/.installed-test
	$(BIN)/python -m pip install --quiet -r benchmarks/requirements.txt
	$(BIN)/python -m benchmarks.run

bench-quick: $(VENV)/.installed-test
	$(BIN)/python -m pip install --quiet -r benchmarks/requirements.txt
	$(BIN)/python -m benchmarks.run --quick

# Where the time goes (not part of `make test`): the phases of a large request inside a server, the
# floors under the core and the JSON path, a small request in process; writes benchmarks/PROFILE.md.
profile: $(VENV)/.installed-test
	$(BIN)/python -m pip install --quiet -r benchmarks/requirements.txt
	$(BIN)/python -m benchmarks.profile --write

# Load, soak and faults (not part of `make test`): the mixed load at concurrency 64 for 60 s against
# `xent serve --workers 2` on loopback, overload, SIGKILL of a worker, SIGTERM, clients that hang up;
# rewrites only its own section of benchmarks/RESULTS.md (about 4 minutes on 2 cores).
soak: $(VENV)/.installed-test
	$(BIN)/python -m benchmarks.soak

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

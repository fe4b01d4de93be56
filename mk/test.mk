# The test tiers and the linters (docs/development.md): `make test` for every change,
# `make test-all` in CI (.ci/run).

.PHONY: test test-all lint

test: $(INSTALLED) ## the fast tier: unit + small integration tests (a few minutes)
	$(PY) -m pytest -q -m "not slow and not distributed and not gpu"

test-all: $(INSTALLED) ## every test but GPU ones: make runs, browsers, Dask processes (what CI runs)
	$(PY) -m pytest -q -m "not gpu"

lint: $(INSTALLED) ## ruff check + format check
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

# ragline: `make demo` and `make test` are the quick start; `make dev` opens the Dagster UI.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
RUN := $(UV) run --frozen

.PHONY: install demo test dev lint bench db-stop clean

# Bytecode is compiled at install, so that a short-lived `ragline search` starts in under a second
# even where PYTHONDONTWRITEBYTECODE is set (README, CLI: cold start).
install:
	@command -v uv >/dev/null 2>&1 || [ -x "$(UV)" ] || python3 -m pip install --user --quiet uv
	$(UV) sync --frozen --compile-bytecode

demo: install
	$(RUN) ragline materialize
	$(RUN) ragline status

test: install
	$(RUN) ruff check .
	$(RUN) lint-imports
	$(RUN) pytest -n 2 --dist loadfile

dev: install
	eval "$$($(RUN) ragline env)" && $(RUN) ragline db migrate && exec $(RUN) dg dev

lint: install
	$(RUN) ruff check . && $(RUN) ruff format --check .

bench: install
	$(UV) sync --frozen --group bench
	$(UV) run --frozen --group bench python benchmarks/ingest_throughput.py

.PHONY: bench-retrieval
bench-retrieval: install
	$(UV) sync --frozen --group bench
	$(UV) run --frozen --group bench python benchmarks/retrieval_latency.py

db-stop:
	$(RUN) ragline db stop

clean: db-stop
	rm -rf .ragline

.PHONY: bench-scale-out
bench-scale-out: install
	$(RUN) python benchmarks/scale_out.py

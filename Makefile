# shopcast: `make demo` to see it work, `make test` to check it. Each target installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench install clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/shopcast demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

bench: $(STAMP)  ## about an hour: ingest, quality on ../shared/data, training at scale, serving (wrk), messaging
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/messaging.py
	$(BIN)/python bench/campaign.py
	$(BIN)/python bench/analytics.py
	$(BIN)/python bench/serve.py
	$(BIN)/python bench/quality.py --tune 120
	$(BIN)/python bench/train_scale.py --events 1000000,5000000,20000000

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

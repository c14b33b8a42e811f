PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml constraints-dev.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints-dev.txt -e '.[dev]'
	touch $(STAMP)

## Set up, then train MAPPO on the built-in 3-agent spread task and print a summary.
demo: $(STAMP)
	$(BIN)/accord train configs/spread_mappo.yaml

## Set up, then run the whole test suite.
test: $(STAMP)
	$(BIN)/ruff check accord tests benchmarks examples
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check accord tests benchmarks examples

bench: $(STAMP)
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache

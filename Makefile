PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean browser

$(STAMP): pyproject.toml constraints-dev.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints-dev.txt -e '.[dev]'
	touch $(STAMP)

## Set up, then train MAPPO on the built-in 3-agent spread task and print a summary.
demo: $(STAMP)
	$(BIN)/accord train configs/spread_mappo.yaml

## The report test opens accord's HTML report in headless Chromium: Debian's package, installed if missing.
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

## Set up, then run the whole test suite.
test: $(STAMP) browser
	$(BIN)/ruff check accord tests benchmarks examples
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check accord tests benchmarks examples

bench: $(STAMP)
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache

# Two commands set everything up on a fresh machine:
#   make demo   create .venv, install, generate the default data set and train the lecture CNN
#   make test   create .venv, install with test extras, run the default test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
N      ?= 20000
SEED   ?= 1
DEMO   ?= demo

.PHONY: demo test test-slow lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	mkdir -p $(DEMO)
	$(BIN)/gen-events --n $(N) --seed $(SEED) --out $(DEMO)/events.h5 --overwrite
	rm -rf $(DEMO)/run
	$(BIN)/train-cnn $(DEMO)/events.h5 --out $(DEMO)/run --seed $(SEED)

test: $(VENV)/.installed
	$(BIN)/python -m pytest

test-slow: $(VENV)/.installed
	$(BIN)/python -m pytest -m slow

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks

format: $(VENV)/.installed
	$(BIN)/ruff format src tests examples benchmarks
	$(BIN)/ruff check --fix src tests examples benchmarks

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .ruff_cache

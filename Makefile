# Two commands set everything up on a fresh machine:
#   make demo     create .venv, install, generate 20 000 events, train the best CNN for them
#                 (train-cnn's defaults), fit the tracks, draw eight events, print a summary
#   make lecture  the same events, the lecture's CNN trained as in the lecture (10 epochs)
#   make test     create .venv, install with test extras (and a CPU-only PyTorch where pip
#                 finds one: TORCH_TEST), run the default test suite
# Each honours VENV= (the virtual environment), DEMO= (output directory), N= (events).
# A run that exists is resumed (or, when complete, only summarised), never deleted.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
N      ?= 20000
SEED   ?= 1
DEMO   ?= demo
# The tests of spectrocnn.torchdata need PyTorch, which the `test` extra leaves out: PyPI's
# torch for Linux x86-64 is the CUDA build (5.4 GB installed). `make test` installs this
# CPU-only build (0.75 GB, about 40 s) where pip finds it (a local wheel directory, or
# PyTorch's CPU index in PIP_EXTRA_INDEX_URL), and otherwise says so: those tests then skip.
# TORCH_TEST= (empty) installs nothing.
TORCH_TEST ?= torch==2.13.0+cpu
EVENTS := $(DEMO)/events-$(N)-seed$(SEED).h5
FIT    := $(DEMO)/fit-$(N)-seed$(SEED).json
GRID   := $(DEMO)/events-$(N)-seed$(SEED)-grid8.png

.PHONY: demo lecture install test test-slow lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

# The event file is made once per N and SEED (gen-events writes it atomically).
$(EVENTS): | $(VENV)/.installed
	mkdir -p $(DEMO)
	$(BIN)/gen-events --n $(N) --seed $(SEED) --out $@ --quiet

$(FIT): $(EVENTS)
	$(BIN)/fit-tracks $(EVENTS) --json > $@.tmp && mv $@.tmp $@

$(GRID): $(EVENTS)
	$(BIN)/show-event $(EVENTS) --grid 8 --out $@

# train RUN_DIR EXTRA_FLAGS: train-cnn into RUN_DIR, resuming it when it holds a run
define train
	if [ -f $(1)/config.json ]; then resume=--resume; else resume=; fi; \
	$(BIN)/train-cnn $(EVENTS) --out $(1) --seed $(SEED) $$resume $(2)
endef

demo: $(EVENTS) $(FIT) $(GRID)
	$(call train,$(DEMO)/run-$(N)-seed$(SEED),)
	@$(BIN)/python examples/demo_summary.py $(DEMO)/run-$(N)-seed$(SEED) --fit $(FIT) \
		--picture $(GRID) --title "make demo: $(N) lecture events, seed $(SEED)"

lecture: $(EVENTS) $(FIT) $(GRID)
	$(call train,$(DEMO)/lecture-$(N)-seed$(SEED),--arch lecture --downsample nearest --epochs 10)
	@$(BIN)/python examples/demo_summary.py $(DEMO)/lecture-$(N)-seed$(SEED) --fit $(FIT) \
		--picture $(GRID) --title "make lecture: the lecture's CNN on $(N) lecture events"

# torch-for-tests: PyTorch for the tests unless installed already (see TORCH_TEST)
define torch-for-tests
	@$(BIN)/python -c 'import torch' 2>/dev/null || [ -z "$(TORCH_TEST)" ] || \
	$(BIN)/python -m pip install --quiet '$(TORCH_TEST)' || \
	echo "make: $(TORCH_TEST) not found: the PyTorch tests will skip (pip install -e '.[torch]' to run them)"
endef

test: $(VENV)/.installed
	$(torch-for-tests)
	$(BIN)/python -m pytest

test-slow: $(VENV)/.installed
	$(torch-for-tests)
	$(BIN)/python -m pytest -m slow

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks

format: $(VENV)/.installed
	$(BIN)/ruff format src tests examples benchmarks
	$(BIN)/ruff check --fix src tests examples benchmarks

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .ruff_cache

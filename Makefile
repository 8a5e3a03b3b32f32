# Set-up and the two everyday jobs. `make demo` and `make test` work on a fresh Debian/Ubuntu machine.
PYTHON ?= python3
VENV ?= .venv
# The build pip resolves for torch 2.13.0 (the CPU wheel where pip is set up with it; PyPI's Linux
# default is the CUDA build). Pass e.g. TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
# for the CPU-only build, or TORCH="torch" / a CUDA wheel spec for a GPU.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
# What running needs (torch and productgan), then what developing needs on top (the dev extra:
# the test tools, the browser driver, every optional extra): `make demo` waits only for the first.
RUN_STAMP := $(VENV)/.productgan-run
DEV_STAMP := $(VENV)/.productgan-dev

.PHONY: setup data browser demo test lint format bench clean-venv

setup: $(DEV_STAMP)

$(RUN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e .
	touch $@

$(DEV_STAMP): $(RUN_STAMP)
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

data:
	bash scripts/ensure-fashion-mnist.sh

# The browser tests' headless Chromium and its driver: Debian's packages, installed with apt-get when
# missing (as root, or through sudo). Selenium drives them as they are; nothing is downloaded.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then \
		echo "chromium and chromedriver are installed"; \
	else \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update -qq && $$sudo apt-get install -y -qq chromium chromium-driver; \
	fi

# A short run on Fashion-MNIST that ends with a sample grid (a few minutes on a laptop CPU): the
# recipe train chooses for the data by itself (the fmnist-32 preset), for 192,000 images.
demo: $(RUN_STAMP) data
	$(BIN)/productgan train --images 192000
	@run=$$(ls -d runs/*/ | tail -n 1); run=$${run%/}; \
	echo; echo "Next, with the run that was just written:"; \
	echo "  $(BIN)/productgan generate $$run --n 64 --seed 7 --out sneakers.png --label Sneaker"; \
	echo "  $(BIN)/productgan report $$run        # $$run/report/index.html: curves, grids, scores"; \
	echo "  $(BIN)/pip install -e '.[serve]' && $(BIN)/productgan serve $$run   # the studio at http://127.0.0.1:8000/"

test: setup
	$(BIN)/python -m pytest

# The whole tree passes ruff's checks and is formatted as ruff formats it (settings in pyproject.toml).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean-venv:
	rm -rf $(VENV)

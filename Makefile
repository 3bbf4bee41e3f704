# skiptune: set-up, demo and tests. Everything installs into .venv in this folder.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# A matched torch/torchvision pair (torchvision must be built for the same torch).
TORCH := torch==2.14.1 torchvision==0.29.1

.PHONY: setup demo test lint clean

$(BIN)/skiptune: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev,sd]"
	touch $@

setup: $(BIN)/skiptune

# The main job on the bundled demonstration model, with the embedded SQLite default ./skiptune.db.
demo: setup
	$(BIN)/skiptune-search --model skiptune/assets/demo_unet.pt --nfe 9
	$(BIN)/skiptune export --nfe 9 -o demo_rho.json
	$(BIN)/skiptune sample --model skiptune/assets/demo_unet.pt --from demo_rho.json -n 64 -o demo_grid.png
	$(BIN)/skiptune front
	$(BIN)/skiptune best
	$(BIN)/skiptune report -o report.html

test: setup
	$(BIN)/ruff check skiptune tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check skiptune tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache

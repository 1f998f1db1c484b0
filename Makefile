# Quick start:  make demo   (set up .venv, upscale a generated clip with the bundled model)
#               make test   (set up .venv, run the whole test suite)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py
	@test -x $(PY) || { python=$$(bash scripts/find-python.sh) && echo "creating $(VENV) with $$python" && "$$python" -m venv $(VENV); }
	$(PY) -m pip install --quiet -e '.[dev,ray]'
	$(PY) -m vapoursynth config >/dev/null 2>&1 || true
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) scripts/make_demo_clip.py demo/input.mp4
	$(VENV)/bin/vapsr-video demo/input.mp4 demo/output.mp4 --scale 2 --overwrite
	@echo "upscaled demo/input.mp4 -> demo/output.mp4"

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build demo *.egg-info

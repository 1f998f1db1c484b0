# Quick start:  make demo   (set up .venv, upscale a generated clip with the bundled model)
#               make test   (set up .venv, run the whole test suite)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PLUGIN := plugins/vapoursynth/libvapsr.so

.PHONY: setup vapoursynth-plugin demo test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py Makefile
	@test -x $(PY) || { python=$$(bash scripts/find-python.sh) && echo "creating $(VENV) with $$python" && "$$python" -m venv $(VENV); }
	$(PY) -m pip install --quiet -e '.[dev,ray,bench,vapoursynth]'
	$(PY) -m vapoursynth config >/dev/null 2>&1 || true
	$(MAKE) --no-print-directory vapoursynth-plugin PY=$(PY)
	@touch $(STAMP)

# An editable install leaves the native plugin in plugins/vapoursynth/, where VapourSynth does not
# look; a link in the venv's VapourSynth plugin folder (where a plain pip install puts the library)
# makes core.vapsr autoload, as the README's example expects. A link, so a rebuild is picked up.
vapoursynth-plugin:
	@test -f $(PLUGIN) || $(PY) setup.py -q build_ext --inplace
	@folder=$$($(PY) -c 'import vapoursynth; print(vapoursynth.get_plugin_dir())')/vapsr && \
	  mkdir -p "$$folder" && ln -sfn "$(CURDIR)/$(PLUGIN)" "$$folder/libvapsr.so" && \
	  echo "VapourSynth autoloads core.vapsr from $$folder"

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

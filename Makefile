# Two commands do everything on a fresh machine:  `make demo`  and  `make test`.
# Both run `setup` first: Debian packages when root (Chromium for browser tests, libusb for open3d),
# a virtual environment in .venv, and maskworks with all its extras.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.maskworks-installed
export OMP_NUM_THREADS ?= 2
export HF_HUB_OFFLINE := 1
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: setup demo test test-fast bench masks screenshots smoke clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	  if ! [ -x /usr/bin/chromium ] || ! ldconfig -p | grep -q libusb-1.0; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium libusb-1.0-0 >/dev/null; \
	  fi; \
	else echo "not root: install Debian packages chromium and libusb-1.0-0 yourself for browser tests and open3d"; fi
	@command -v $(PY) >/dev/null || { echo "needs $(PY) (set PY=...)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[all]"
	touch $(STAMP)

demo: setup  ## serve the Gradio app on http://127.0.0.1:7860 with the shipped weights and examples
	$(BIN)/maskworks demo

test: setup  ## the whole test suite, browser tests included
	$(BIN)/python -m pytest -q

test-fast: setup  ## everything but the slow and browser tests
	$(BIN)/python -m pytest -q -m "not slow and not browser"

bench: setup
	$(BIN)/maskworks bench mae-step --configs a --json bench-mae-step.json

masks: setup  ## the masking-strategy pictures of the README
	$(BIN)/maskworks masks --out docs/masks

screenshots: setup  ## the browser tests, refreshing the app pictures under docs/ that the README shows
	MASKWORKS_UPDATE_DOCS=1 $(BIN)/python -m pytest -q -m browser

smoke: setup  ## the first recipe, under a minute on CPU
	$(BIN)/maskworks train image-mae-cxr --preset smoke

clean:
	rm -rf $(VENV) runs test-artifacts .pytest_cache

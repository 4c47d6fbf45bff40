# The two set-up commands of the README. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_DEMO := $(VENV)/.installed-demo
STAMP_TEST := $(VENV)/.installed-test

.PHONY: demo test install-demo install-test clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# torch/torchvision are pinned in pyproject.toml (the pair that installs from this machine's disk).
$(STAMP_DEMO): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[coreml,teacher]"
	touch $@

$(STAMP_TEST): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[coreml,teacher,dev]"
	touch $@ $(STAMP_DEMO)

install-demo: $(STAMP_DEMO)
install-test: $(STAMP_TEST)

demo: $(STAMP_DEMO)
	$(VENV)/bin/rali-edge demo

test: $(STAMP_TEST)
	$(PY) -m pytest

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

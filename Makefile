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

# pyproject.toml asks for torch/torchvision ranges (so the library installs beside a user's own torch);
# constraints.txt pins the exact pair this project is tested with (the one on this machine's disk).
# Every install here applies it: without it pip may pull a newer multi-GB CUDA torch.
CONSTRAINTS := constraints.txt
# The demo exports and runs every format whose runtime installs here.
EXTRAS := coreml,teacher,litert,executorch,openvino,ray

$(STAMP_DEMO): pyproject.toml $(CONSTRAINTS) | $(PY)
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e ".[$(EXTRAS)]"
	touch $@

$(STAMP_TEST): pyproject.toml $(CONSTRAINTS) | $(PY)
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e ".[$(EXTRAS),dev]"
	touch $@ $(STAMP_DEMO)

install-demo: $(STAMP_DEMO)
install-test: $(STAMP_TEST)

demo: $(STAMP_DEMO)
	$(VENV)/bin/rali-edge demo

test: $(STAMP_TEST)
	$(PY) -m pytest

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

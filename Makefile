# voxar developer entry points. Every target installs what it needs itself (Debian packages + a virtualenv).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= dev,live,eval,train
APT_PACKAGES := espeak-ng flite libportaudio2 libsndfile1 sox
PYTEST_ARGS ?=
# pytest-xdist workers for `make test` (0: one process); --dist loadfile keeps a file's module fixtures in one worker.
PYTEST_WORKERS ?= 2
comma := ,

.PHONY: help install sysdeps test lint format bench demo clean gpu-wheels

help:
	@echo "make demo     set up everything and run the main job"
	@echo "make test     set up and run the test suite"
	@echo "make lint     ruff check + format check"
	@echo "make bench    CPU benchmarks (JSON under exp/bench/)"
	@echo "make install  Debian packages + $(VENV) with voxar[$(EXTRAS)] (torch pinned by constraints.txt)"
	@echo "make gpu-wheels  wheels for scripts/gpu_check.sh on a lent GPU machine (.whl/)"

sysdeps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  if [ "$$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/.installed-$(subst $(comma),-,$(EXTRAS)): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	touch $@

install: sysdeps $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

# pytest exits 5 when it collects no test: that is a failure of the suite, not a pass, and says so.
test: install
	@$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; fi; exit $$rc

lint: install
	$(VENV)/bin/ruff check voxar tests
	$(VENV)/bin/ruff format --check voxar tests

format: install
	$(VENV)/bin/ruff check --fix voxar tests
	$(VENV)/bin/ruff format voxar tests

bench: install
	@mkdir -p exp/bench
	$(VENV)/bin/voxar bench features --device cpu -o exp/bench/features_cpu.json
	$(VENV)/bin/voxar bench vocoder --size tiny --causal --device cpu -o exp/bench/vocoder_tiny_causal_cpu.json
	$(VENV)/bin/voxar bench tts --size small --device cpu -o exp/bench/tts_small_cpu.json
	$(VENV)/bin/voxar bench tts --size tiny --device cpu -o exp/bench/tts_tiny_cpu.json
	$(VENV)/bin/voxar bench tts --size tiny --device cpu --streams 4 -o exp/bench/tts_tiny_cpu_streams4.json
	$(VENV)/bin/voxar bench vc --device cpu -o exp/bench/vc_cpu.json
	@echo "JSON results in exp/bench/ (docs/benchmarks.md explains them)"

# Wheels that the lent GPU machine's image lacks (it has PyTorch and numpy, no network): the versions of this
# virtualenv, for its Python 3.12, into .whl/ (git-ignored), carried by the device tool for scripts/gpu_check.sh.
GPU_WHEELS := soundfile cffi pycparser soxr typer click rich shellingham markdown-it-py mdurl pygments pyyaml tqdm \
	pydantic pydantic-core annotated-types annotated-doc typing-inspection typing-extensions pytest pluggy iniconfig \
	packaging safetensors
gpu-wheels: install
	rm -rf .whl && mkdir -p .whl
	$(PY) -m pip freeze | grep -iE "^($$(echo $(GPU_WHEELS) | tr ' ' '|' | sed 's/-/[-_]/g'))==" > .whl/requirements.txt
	$(PY) -m pip download -q --only-binary=:all: --no-deps --python-version 3.12 --implementation cp \
	  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
	  --platform any -d .whl -r .whl/requirements.txt
	@du -sh .whl

demo: install
	bash scripts/demo.sh $(VENV)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist *.egg-info out

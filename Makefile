# bnnx: `make run` sets everything up and opens the explorer; `make test` runs the suite.
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip -q --disable-pip-version-check
STAMP  := $(VENV)/.bnnx-installed
SOURCES := pyproject.toml CMakeLists.txt $(wildcard kernels/csrc/*.cpp kernels/csrc/*.h)

.PHONY: setup run test test-fast bench fuzz lint system-deps clean

setup: $(STAMP)

# Idempotent: reinstalls only when the packaging or the C++ sources changed.
# torch is pinned to 2.13.0 first: on a machine without a GPU pip's configured wheel folder holds
# its CPU build; a bare `torch` requirement would pull a multi-GB CUDA build.
$(STAMP): $(SOURCES)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install torch==2.13.0
	$(PIP) install "scikit-build-core>=1.0" "nanobind>=2.0"  # 1.0: app.py as a wheel module
	$(PIP) install --no-build-isolation -e '.[test,deploy]'  # deploy: export tests
	touch $@

run: setup
	$(PY) app.py

# Browser tests need Debian's chromium and chromium-driver, the real-data test Debian's
# dataset-fashion-mnist, the NEON kernel test a cross compiler and qemu; installed here when
# missing (root only).
SYSTEM_PKGS = $(if $(shell command -v chromedriver),,chromium chromium-driver) \
              $(if $(wildcard /usr/share/datasets/fashion-mnist),,dataset-fashion-mnist) \
              $(if $(shell command -v aarch64-linux-gnu-g++),,g++-aarch64-linux-gnu) \
              $(if $(shell command -v qemu-aarch64),,qemu-user)
system-deps:
	@pkgs="$(strip $(SYSTEM_PKGS))"; [ -z "$$pkgs" ] || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q $$pkgs; \
	  else echo "missing Debian packages: run 'sudo apt-get install $$pkgs'"; fi; }

lint: setup
	$(PY) -m ruff check .

test: setup system-deps lint
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not browser"

# The `bench` extra: the peers the benchmarks measure, OpenVINO (setup's `deploy` extra has it
# too) and optuna-dashboard. `bench search` takes hours and runs on its own.
bench: setup
	$(PIP) install --no-build-isolation -e '.[test,bench]'
	$(PY) app.py bench kernels
	$(PY) app.py bench networks
	$(PY) app.py bench training
	$(PY) app.py bench explorer

# 10,000 random layers per ISA path against torch, bit for bit.
fuzz: setup
	BNNX_FUZZ_CASES=10000 $(PY) -m pytest -q tests/test_kernels_isa.py

clean:
	rm -rf build $(VENV)

# The two commands of the README: `make demo` and `make test`.
# Both create .venv/ inside the checkout and install what they need into it.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.lienwatch-installed
MCU_STAMP := $(VENV)/.mcu-tools-installed
# edge/mcu's tools: MicroPython's own stubs (typecheck) and MicroPython itself, the official
# WebAssembly port run by Node.js (tests/edge_mcu/test_micropython.py).
MPY_STUBS        := micropython-stm32-stubs==1.29.0.post1
MICROPYTHON_WASM := @micropython/micropython-webassembly-pyscript@1.27.0
PYX    := $(wildcard cython_ext/*.pyx cython_ext/*.pxd protocol/*.pyx)

.PHONY: demo test lint typecheck pytest install system-deps wheel bench clean gateway gateway-test gateway-clean

demo: install system-deps
	$(VENV)/bin/lienwatch demo

test: install system-deps lint typecheck pytest

lint: install
	$(VENV)/bin/ruff check .

typecheck: install
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --config-file edge/mcu/mypy.ini

pytest: install system-deps
	$(VENV)/bin/pytest

install: $(STAMP) $(MCU_STAMP)

# Reinstalls (and so recompiles the Cython extensions) whenever the build inputs change.
$(STAMP): pyproject.toml setup.py $(PYX)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(MCU_STAMP): $(STAMP) Makefile
	$(PY) -m pip install --quiet --upgrade --target $(VENV)/mpy-stubs '$(MPY_STUBS)'
	@command -v npm >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; \
	  else \
	    echo "Node.js is missing: run 'sudo apt-get install nodejs npm', then make again." >&2; exit 1; \
	  fi; }
	npm install --silent --no-audit --no-fund --prefix $(VENV)/mcu '$(MICROPYTHON_WASM)'
	touch $@

# mosquitto is a real broker the tests and the demo start on their own port; Debian's headless
# Chromium and its ChromeDriver run the console's browser tests (tests/console).
system-deps:
	@command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto; \
	  else \
	    echo "mosquitto is missing: run 'sudo apt-get install mosquitto', then make again." >&2; exit 1; \
	  fi; }
	@{ test -x /usr/bin/chromium && test -x /usr/bin/chromedriver; } || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	  else \
	    echo "Chromium is missing: run 'sudo apt-get install chromium chromium-driver', then make again." >&2; exit 1; \
	  fi; }

wheel: install
	$(PY) -m pip wheel --no-deps -w dist .

# Every benchmark script (bench/report.py is their shared output helper, bench/fault_agent.py the
# agent process bench/faults.py starts, bench/agent_replay.py what bench/agent.py runs under
# callgrind: none is a benchmark; bench/gateway.py needs `make gateway` and runs in gateway-test).
BENCHES := $(filter-out report __init__ fault_agent agent_replay gateway,$(basename $(notdir $(wildcard bench/*.py))))
bench: install system-deps
	for b in $(BENCHES); do echo "== bench/$$b.py"; $(PY) -m bench.$$b || exit 1; done

clean:
	rm -rf build dist *.egg-info cython_ext/*.c cython_ext/*.so

# Gateway artefacts (docs/gateway.md): the extensions cross-compiled on this host against Debian
# bookworm target roots (debootstrap, cached per machine in /var/cache/lienwatch/gateway; foreign
# ones run under qemu-user through binfmt_misc), the wheelhouse resolved in the root by the target's
# pip; outputs in build/gateway/. As root, gateway.sh installs debootstrap, qemu-user-static and the
# cross compilers when missing. GATEWAY_BUILD=root builds the wheel in the root instead (slow).
# armhf's cbor2 (no armv7 wheel on PyPI) is cross-built once per machine with Debian's Rust.
GATEWAY_ARCHES    ?= amd64 arm64 armhf
GATEWAY_TEST_ARCH ?= arm64
# The edge subset under emulation (docs/gateway.md: why these, how long): the tests of what can
# differ by architecture: the compiled extensions against their oracles, the wire format (golden
# vectors, round trips, hostile input, the compiled fix-block kernel), Ed25519 signatures (pynacl),
# the compiled CAN frame path against cantools, the OBD-II PID decoders. About 10 times the host's
# time under qemu-user; the rest of the edge suite is architecture-independent Python.
GATEWAY_TESTS     ?= tests/cython_ext/test_ring.py tests/cython_ext/test_geo.py \
                     tests/cython_ext/test_features.py tests/cython_ext/test_features_oracle.py \
                     tests/protocol/test_fixblock.py tests/protocol/test_vectors.py \
                     tests/protocol/test_roundtrip.py tests/protocol/test_signing.py \
                     tests/protocol/test_hostile_input.py tests/edge_sources/test_canframe.py \
                     tests/edge_sources/test_dbc_changes.py tests/edge_sources/test_pids.py
GATEWAY_SECONDS   ?= 20

gateway: install
	deploy/gateway/gateway.sh host-deps
	for arch in $(GATEWAY_ARCHES); do \
	  deploy/gateway/gateway.sh build $$arch && deploy/gateway/gateway.sh deb $$arch || exit 1; done
	@ls -l build/gateway/*.deb build/gateway/*/dist/*.whl

# The edge test subset in the target root with the wheel's extensions, then the packaged agent
# installed, provisioned and driven there against the HIL car, and the package's upgrade/remove/purge.
# Builds the test architecture's artefacts first only when `make gateway` has not.
gateway-test: install
	deploy/gateway/gateway.sh host-deps
	ls build/gateway/lienwatch-agent_*_$(GATEWAY_TEST_ARCH).deb >/dev/null 2>&1 || { \
	  deploy/gateway/gateway.sh build $(GATEWAY_TEST_ARCH) && deploy/gateway/gateway.sh deb $(GATEWAY_TEST_ARCH); }
	deploy/gateway/gateway.sh edge-tests $(GATEWAY_TEST_ARCH) -m "not slow" $(GATEWAY_TESTS)
	$(PY) -m bench.gateway --arch $(GATEWAY_TEST_ARCH) --seconds $(GATEWAY_SECONDS)

gateway-clean:
	deploy/gateway/gateway.sh clean

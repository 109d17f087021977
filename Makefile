# pvcore: `make run` starts the embedded demo device, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PVCORE_STORAGE_DIR ?= $(CURDIR)/var/storage
export PVCORE_RUN_DIR ?= $(CURDIR)/var/run
export PVCORE_SOCKET ?= $(CURDIR)/var/run/pv-ctrl

.PHONY: run test test-long clean install bench

install: $(STAMP)

# System tools the black-box tests drive (curl; netcat for upstream's pvcurl).
SYSTEM_TOOLS := curl nc
$(STAMP): setup.cfg pyproject.toml contrib/pvcore-wakelocks/pyproject.toml
	@missing=""; for t in $(SYSTEM_TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing system tools:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq curl netcat-openbsd >/dev/null; \
	fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	$(BIN)/python -m pip install -q -e contrib/pvcore-wakelocks
	touch $@

run: $(STAMP)
	mkdir -p var/run var/storage
	PVCORE_DEMO=1 $(BIN)/gunicorn -c contrib/gunicorn.conf.py

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-long: $(STAMP)
	PVCORE_TEST_LONG=1 $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) var build *.egg-info .pytest_cache .bench

# `make bench` (QUICK=1 for a smoke run): figures against same-run baselines.
.bench/node_modules/.bin/autocannon:
	mkdir -p .bench && npm install --silent --no-audit --no-fund --prefix .bench autocannon@8 >/dev/null

bench: $(STAMP) .bench/node_modules/.bin/autocannon
	$(BIN)/python -m pvcore.bench $(if $(QUICK),--quick)

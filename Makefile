# pvcore: `make run` starts the embedded demo device, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-long clean install bench

install: $(STAMP)

# System tools the tests drive: curl; netcat for upstream's pvcurl; npm for the
# bench's load generator (autocannon), whose quick form is part of the suite.
SYSTEM_TOOLS := curl nc npm
$(STAMP): setup.cfg pyproject.toml contrib/pvcore-wakelocks/pyproject.toml
	@missing=""; for t in $(SYSTEM_TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing system tools:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq curl netcat-openbsd npm >/dev/null; \
	fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	$(BIN)/python -m pip install -q -e contrib/pvcore-wakelocks
	touch $@

# The settings' defaults are the demo device's: ./var/storage, ./var/run/pv-ctrl.
run: $(STAMP)
	mkdir -p var/run var/storage
	PVCORE_DEMO=1 $(BIN)/gunicorn -c contrib/gunicorn.conf.py

AUTOCANNON := .bench/node_modules/.bin/autocannon

test: $(STAMP) $(AUTOCANNON)
	$(BIN)/python -m pytest -q

test-long: $(STAMP) $(AUTOCANNON)
	PVCORE_TEST_LONG=1 $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) var build *.egg-info .pytest_cache .bench

# `make bench` (QUICK=1 for a smoke run): figures against same-run baselines.
$(AUTOCANNON):
	mkdir -p .bench && npm install --silent --no-audit --no-fund --prefix .bench autocannon@8 >/dev/null

bench: $(STAMP) $(AUTOCANNON)
	$(BIN)/python -m pvcore.bench $(if $(QUICK),--quick)

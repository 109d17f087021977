# pvcore: `make run` starts the embedded demo device, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run run-lxc test test-tools lxc-tools test-long clean install bench

install: $(STAMP)

# System tools the tests drive, as command:Debian-package. `make run` needs
# none of them. Each missing one is installed alone, and apt may not remove
# anything to make room (--no-remove): a machine whose nodejs or curl came from
# elsewhere keeps it, and an unsatisfiable package fails on its own line.
TEST_TOOLS := curl:curl nc:netcat-openbsd h2load:nghttp2-client
define apt_install_missing
	@for pair in $(1); do cmd=$${pair%%:*}; pkg=$${pair#*:}; \
		command -v $$cmd >/dev/null 2>&1 && continue; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		[ -n "$$APT_UPDATED" ] || { $$SUDO apt-get update -qq >/dev/null; APT_UPDATED=1; }; \
		echo "installing $$pkg (for $$cmd)"; \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-remove --no-install-recommends $$pkg >/dev/null || exit 1; \
	done
endef

# The LXC runtime (pv_lxc) and its tests need root, lxc-start, mksquashfs and
# a static busybox for the demo rootfs (nc is copied in with its libraries).
# Without root nothing is installed for it and its tests skip, saying why.
LXC_TOOLS := lxc-start:lxc mksquashfs:squashfs-tools busybox:busybox-static nc:netcat-openbsd
lxc-tools:
ifeq ($(shell id -u),0)
	$(call apt_install_missing,$(LXC_TOOLS))
else
	@echo "not root: the LXC runtime's tests will skip (make run-lxc needs root)"
endif

$(STAMP): setup.cfg pyproject.toml contrib/pvcore-client/pyproject.toml contrib/pvcore-demo/pyproject.toml contrib/pvcore-dev/pyproject.toml contrib/pvcore-wakelocks/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The client first: pvcore depends on it, and it is in no package index.
	$(BIN)/python -m pip install -q -e contrib/pvcore-client
	$(BIN)/python -m pip install -q -e '.[test]'
	$(BIN)/python -m pip install -q -e contrib/pvcore-demo
	$(BIN)/python -m pip install -q -e contrib/pvcore-dev
	$(BIN)/python -m pip install -q -e contrib/pvcore-wakelocks
	touch $@

# Settings default to a device's (/storage, /run/pantavisor/pv, LXC, real
# reboot); PVCORE_DEMO=1 gives the laptop demo's: ./var/storage, ./var/run/pv-ctrl.
run: $(STAMP)
	mkdir -p var/run var/storage
	PVCORE_DEMO=1 $(BIN)/gunicorn -c python:pvcore.gunicorn_conf

# `make run-lxc` (root): the same device with the LXC runtime. Beside the
# server, pv_lxc.demo builds a busybox rootfs with mksquashfs and installs it
# through the socket as any client would (PUT /objects, PUT /steps/locals,
# LOCAL_RUN); its containers signal READY from inside.
LXC_DEMO := var/lxc
run-lxc: $(STAMP) lxc-tools
	mkdir -p $(LXC_DEMO)/run $(LXC_DEMO)/storage
	$(BIN)/python -m pv_lxc.demo --socket $(LXC_DEMO)/run/pv-ctrl & \
	PVCORE_DEMO=1 PVCORE_DEMO_SEED=0 PVCORE_CONTAINER_RUNTIME=lxc \
		PVCORE_STORAGE_DIR=$(LXC_DEMO)/storage PVCORE_RUN_DIR=$(LXC_DEMO)/run \
		exec $(BIN)/gunicorn -c python:pvcore.gunicorn_conf

test-tools:
	$(call apt_install_missing,$(TEST_TOOLS))

test: $(STAMP) test-tools lxc-tools
	$(BIN)/python -m pytest -q

test-long: $(STAMP) test-tools lxc-tools
	PVCORE_TEST_LONG=1 $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) var build *.egg-info .pytest_cache

# `make bench` (QUICK=1 for a smoke run): figures against same-run baselines,
# load from h2load (nghttp2-client), whose own ceiling the table shows.
bench: $(STAMP) test-tools
	$(BIN)/python -m pvcore.bench $(if $(QUICK),--quick)

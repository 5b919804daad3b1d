# linuxns.isolation: build, converge and test.
#   make site   set up this machine (venv, apt packages, collection) and run playbooks/site.yml
#   make test   the whole pipeline: $(TEST_STEPS)
# Every step installs what it needs first, so each target also works on its own on a fresh clone.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
BUILD := $(CURDIR)/.build

# The collection as users get it: built with `ansible-galaxy collection build` from the copy
# below and installed here. site, lint and fleet run against this install.
COLLECTIONS := $(BUILD)/collections
# The copy ansible-test and pytest run from: the files of the next commit (git-tracked plus
# untracked, not ignored), rsync'ed to <root>/ansible_collections/linuxns/isolation. It lives
# outside the work tree because ansible-test walks up to the nearest .git to list content.
TEST_ROOT ?= /tmp/linuxns-isolation-$(shell printf '%s' '$(CURDIR)' | sha256sum | cut -c1-12)
COPY := $(TEST_ROOT)/ansible_collections/linuxns/isolation

# ansible-test sanity: only the interpreter of the venv is guaranteed on every machine.
SANITY_PYTHON ?= $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
SANITY_ARGS ?=
PYTEST_ARGS ?=
# The systemd-host tests of limits run twice: on a host whose cgroup v1 controllers are read-only
# (as systemd-nspawn leaves them here: the limits must fail clearly), and on one booted with its
# own writable subtree of them (systemd_host.py up --writable-cgroups: the limits are enforced).
SYSTEMD_WRITABLE := LNSFLEET_SYSTEMD_CGROUPS=writable LNSFLEET_SYSTEMD_HOST=s2
SYSTEMD_WRITABLE_TESTS := resources or oneshot

# Steps of `make test`, in order (fleet = the molecule scenarios under extensions/molecule).
TEST_STEPS := sanity units integration lint fleet

export PATH := $(BIN):$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
# CI logs are plain text; elsewhere each tool colours its output when it writes to a terminal.
ifneq ($(CI),)
export NO_COLOR := 1
export PY_COLORS := 0
export ANSIBLE_NOCOLOR := 1
ANSIBLE_TEST_COLOR := --color no
endif

.PHONY: help site test $(TEST_STEPS) fleet integration-engine integration-targets integration-systemd \
	venv apt copy collection tarball seed-ansible-test clean

help:
	@echo 'make site         venv + apt packages + collection, then ansible-playbook playbooks/site.yml'
	@echo 'make test         $(TEST_STEPS)'
	@echo 'make sanity       ansible-test sanity --venv --python $(SANITY_PYTHON) on the copy in $(COPY)'
	@echo 'make units        pytest tests/unit'
	@echo 'make integration  as root: pytest tests/integration/engine, ansible-test integration targets, pytest tests/integration/systemd'
	@echo 'make integration-engine   only the pytest part of make integration'
	@echo 'make integration-targets  only the ansible-test part of make integration'
	@echo 'make integration-systemd  only the systemd-host part of make integration (pytest tests/integration/systemd)'
	@echo 'make lint         ansible-lint --profile production'
	@echo 'make bench        benchmarks/run.py (not in make test; exit 1 on a missed target; BENCH_QUICK=1, BENCH_ONLY=prefix)'
	@echo 'make fleet        molecule scenarios under extensions/molecule (not yet part of make test)'
	@echo 'make collection   build the collection tarball into $(BUILD)/dist and install it into $(COLLECTIONS)'
	@echo 'make tarball      make collection, then print the absolute path of the tarball (last line)'
	@echo 'make clean        remove .build and the test copy (keeps .venv)'

# ---- setup -----------------------------------------------------------------------------------

venv:
	@scripts/ensure-venv.sh $(VENV) requirements.txt $(PYTHON)

apt:
	@scripts/ensure-apt-packages.sh

copy:
	@$(PYTHON) scripts/sync-collection-copy.py $(CURDIR) $(COPY)

collection: venv copy
	@rm -rf $(BUILD)/dist
	@$(BIN)/ansible-galaxy collection build --force --output-path $(BUILD)/dist $(COPY) >/dev/null
	@$(BIN)/ansible-galaxy collection install --offline --force -p $(COLLECTIONS) $(BUILD)/dist/linuxns-isolation-*.tar.gz >/dev/null
	@echo "collection: installed $$(basename $(BUILD)/dist/*.tar.gz) into $(COLLECTIONS)"

# The last line is the tarball's absolute path: ansible-galaxy collection install "$$(make -s tarball | tail -1)"
tarball: collection
	@ls $(BUILD)/dist/linuxns-isolation-*.tar.gz

seed-ansible-test: venv
	@scripts/seed-ansible-test-cache.sh $(BIN)/python

site: venv apt collection
	$(BIN)/ansible-playbook -i playbooks/inventory/hosts.yml playbooks/site.yml

# ---- test pipeline ---------------------------------------------------------------------------

test: venv apt
	@for step in $(TEST_STEPS); do \
		start=$$SECONDS; \
		echo "==== make $$step"; \
		$(MAKE) --no-print-directory $$step || { echo "==== make $$step FAILED after $$((SECONDS - start)) s"; exit 1; }; \
		echo "==== make $$step passed in $$((SECONDS - start)) s"; \
	done

sanity: venv copy seed-ansible-test
	@for ignore in tests/sanity/ignore-*.txt; do \
		if [[ -s $$ignore ]]; then echo "$$ignore must stay empty: fix the code instead of ignoring a sanity error" >&2; exit 1; fi; \
	done
	cd $(COPY) && $(BIN)/ansible-test sanity --venv --python $(SANITY_PYTHON) $(ANSIBLE_TEST_COLOR) $(SANITY_ARGS)

units: venv copy
	@scripts/run-pytest.sh $(COPY) tests/unit $(BIN)/python $(TEST_ROOT) $(PYTEST_ARGS)

# Every part runs even when an earlier one fails, so one run reports every failure; any fails the step.
# The pytest parts' failures are repeated at the end: a CI log's tail then names them. set +e:
# under the recipe shell's -e and pipefail, a failing part would end the recipe there.
integration: venv apt copy collection
	@scripts/require-root.sh 'make integration'
	@set +e; status=0; mkdir -p $(BUILD); \
	scripts/run-pytest.sh $(COPY) tests/integration/engine $(BIN)/python $(TEST_ROOT) $(PYTEST_ARGS) \
		2>&1 | tee $(BUILD)/engine-tests.log; \
	[[ $${PIPESTATUS[0]} -eq 0 ]] || status=1; \
	scripts/run-integration-targets.sh $(COPY) $(BIN) || status=1; \
	scripts/run-pytest.sh $(COPY) tests/integration/systemd $(BIN)/python $(TEST_ROOT) $(PYTEST_ARGS) \
		2>&1 | tee $(BUILD)/systemd-tests.log; \
	[[ $${PIPESTATUS[0]} -eq 0 ]] || status=1; \
	$(SYSTEMD_WRITABLE) scripts/run-pytest.sh $(COPY) tests/integration/systemd $(BIN)/python $(TEST_ROOT) \
		-k '$(SYSTEMD_WRITABLE_TESTS)' $(PYTEST_ARGS) 2>&1 | tee $(BUILD)/systemd-writable-tests.log; \
	[[ $${PIPESTATUS[0]} -eq 0 ]] || status=1; \
	if [[ $$status -ne 0 ]]; then \
		for part in engine systemd systemd-writable; do \
			echo "==== integration: $$part tests $$(tail -n 1 $(BUILD)/$$part-tests.log)"; \
			grep -E '^(FAILED|ERROR) ' $(BUILD)/$$part-tests.log || true; \
		done; \
	fi; \
	exit $$status

integration-engine: venv apt copy collection
	@scripts/require-root.sh 'make integration'
	@scripts/run-pytest.sh $(COPY) tests/integration/engine $(BIN)/python $(TEST_ROOT) $(PYTEST_ARGS)

# Real systemd hosts (systemd-nspawn, scripts/fleet/systemd_host.py); the rootfs is cached.
integration-systemd: venv apt copy collection
	@scripts/require-root.sh 'make integration'
	@scripts/run-pytest.sh $(COPY) tests/integration/systemd $(BIN)/python $(TEST_ROOT) $(PYTEST_ARGS)
	@$(SYSTEMD_WRITABLE) scripts/run-pytest.sh $(COPY) tests/integration/systemd $(BIN)/python $(TEST_ROOT) \
		-k '$(SYSTEMD_WRITABLE_TESTS)' $(PYTEST_ARGS)

integration-targets: venv apt copy collection
	@scripts/require-root.sh 'make integration'
	@scripts/run-integration-targets.sh $(COPY) $(BIN)

lint: venv collection
	$(BIN)/ansible-lint --profile production

# The table also goes to .build/bench.md. BENCH_QUICK=1: fewer repetitions; BENCH_ONLY=task,services: a subset.
bench: venv copy
	@if [[ -f benchmarks/run.py ]]; then \
		PYTHONPATH=$(TEST_ROOT) $(BIN)/python benchmarks/run.py; \
	else \
		echo 'bench: no benchmarks/run.py yet'; \
	fi

fleet: venv apt collection
	@scripts/run-fleet.sh $(BIN)

clean:
	rm -rf $(BUILD) $(TEST_ROOT)

# Two commands for a new user: `make run` and `make test`. Everything else is a step they call.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Debian packages: python-ldap's build headers, the OpenLDAP server and tools for the demo and
# test directory, and Chromium (with a font, so screenshots show text) for the browser tests.
APT_PACKAGES := slapd ldap-utils libldap2-dev libsasl2-dev chromium fonts-dejavu-core samba samba-ad-dc samba-ad-provision ldb-tools
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: setup system-packages venv services run test lint typecheck check clean

setup: system-packages venv

system-packages:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# PostgreSQL and Redis on loopback, installed and started when missing, as CI runs the suite:
#   make services
#   DATABASE_URL=postgres://warden:warden@127.0.0.1:5432/warden \
#   CELERY_BROKER_URL=redis://127.0.0.1:6379/0 make test
# `make run` and `make test` need neither (SQLite, an in-process or file broker).
services:
	@bash tools/services.sh

# The demo: a local slapd with demo people, kubesim with dev/staging/prod clusters, the web app on
# http://$(HOST):$(PORT), a Celery worker and beat, all on embedded defaults (SQLite, a file broker).
# config.demo_settings: production's settings, with a secret key, encryption key and metrics token
# kept in var/.
run: setup
	DJANGO_SETTINGS_MODULE=config.demo_settings $(PY) manage.py rundemo --host $(HOST) --port $(PORT)

test: setup
	$(PY) -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

# The Active Directory tests alone, against a Samba AD DC the fixture provisions on a loopback
# address (as root; the seeded domain is kept in /tmp/warden-samba-template-* between runs).
.PHONY: test-ad
test-ad: setup
	WARDEN_REQUIRE_SERVICES=1 $(PY) -m pytest tests/access/test_directory_ad.py \
	  tests/access/test_login_ad.py tests/access/test_directory_ranges.py $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv
	DEBUG=1 $(VENV)/bin/mypy config core access clusters ascode kubesim

check: lint typecheck test

clean:
	rm -rf $(VENV) var/ .pytest_cache

# The real-servers tier: kube-apiserver, kube-controller-manager, etcd and Dex built from their
# official Go modules (pinned in tests/k8s/*/go.mod, tests/dex/go.mod) once per version into $(WARDEN_BUILD_CACHE)
# (never into the clone), then reused. `make test` skips this tier when they are not built.
.PHONY: kube-apiserver-bin kube-apiserver test-kubernetes
export WARDEN_BUILD_CACHE ?= $(HOME)/.cache/warden

kube-apiserver-bin:
	@bash tests/k8s/build.sh all >/dev/null

# For people: one real API server with etcd on loopback, admin kubeconfig in var/; Ctrl-C stops.
kube-apiserver: venv kube-apiserver-bin
	$(PY) -m tests.k8s.control_plane --kubeconfig var/kube-apiserver.kubeconfig

test-kubernetes: setup kube-apiserver-bin
	WARDEN_REQUIRE_KUBE_APISERVER=1 $(PY) -m pytest -m kube_apiserver $(PYTEST_ARGS)

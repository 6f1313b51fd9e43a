# FlowOrchestrator: `make run` starts the product, `make test` runs every test.
# Both set up everything they need in .venv first.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
export FLOWORCH_DATA_DIR ?= $(CURDIR)/.floworch
# The example notebooks call stand-in services on this machine (see notebooks/demo_services.py);
# outbound requests to any other private or loopback address stay refused.
export FLOWORCH_HTTP_ALLOW ?= 127.0.0.1
PORT ?= 8888
TLS ?= 0
TLS_DIR = $(FLOWORCH_DATA_DIR)/tls

# The browser side (labextension/) is built by the install; a change to it rebuilds.
LABEXT_SOURCES := labextension/package.json labextension/tsconfig.json labextension/build-widget.mjs \
                  $(shell find labextension/src labextension/style -type f 2>/dev/null)
LABEXT_LINK := $(VENV)/share/jupyter/labextensions/floworch
LABEXT_MODULES := labextension/node_modules/.package-lock.json
CHROMIUM := /usr/bin/chromium

.PHONY: run test lint install clean

install: $(STAMP)

$(STAMP): pyproject.toml $(LABEXT_SOURCES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	rm -rf floworch_ext/labextension kernel/floworch/static
	$(PY) -m pip install --quiet -e '.[test]'
	# The install copied the built labextension; a link lets `npm run build` in labextension/ take effect at once.
	rm -rf $(LABEXT_LINK) && ln -s $(CURDIR)/floworch_ext/labextension $(LABEXT_LINK)
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (FlowOrchestrator)" >/dev/null
	touch $(STAMP)

# JupyterLab with real-time collaboration; its FlowOrchestrator extension starts the embedded
# Temporal dev server and a worker (data in $(FLOWORCH_DATA_DIR)), and stops them on Ctrl-C.
# (Containers often run as root, which Jupyter refuses unless told.)
# TLS=1 serves HTTPS with a self-signed certificate made once in $(FLOWORCH_DATA_DIR)/tls; kernels
# started by this server trust it (FLOWORCH_JUPYTER_CA). For a real certificate see docs/security.md.
run: $(STAMP)
	$(if $(filter 1,$(TLS)),$(PY) -m floworch_server.tls $(TLS_DIR) >/dev/null)
	$(if $(filter 1,$(TLS)),FLOWORCH_JUPYTER_CA=$(TLS_DIR)/cert.pem) $(VENV)/bin/jupyter lab --notebook-dir=$(CURDIR) --no-browser --collaborative \
	  --ServerApp.ip=127.0.0.1 --ServerApp.port=$(PORT) --LabApp.default_url=/lab/tree/notebooks/01-quickstart.ipynb \
	  $(if $(filter 1,$(TLS)),--ServerApp.certfile=$(TLS_DIR)/cert.pem --ServerApp.keyfile=$(TLS_DIR)/key.pem) \
	  $(if $(filter 0,$(shell id -u)),--allow-root)

# Unit, integration (real Temporal dev server, real Jupyter server, real SQLite and PostgreSQL),
# replay of stored histories, and the example notebooks under nbval.
# Browser tests drive Debian's Chromium with Playwright (browsers cannot be downloaded here).
# Linted first: what passes CI is what `make test` runs.
test: lint $(STAMP) $(CHROMIUM)
	$(PY) -m pytest -p no:cacheprovider tests notebooks --nbval-lax --durations=15

# ruff (lint and format) and mypy for the Python, tsc and eslint for the labextension; their
# settings are in pyproject.toml and labextension/eslint.config.mjs.
lint: $(STAMP) $(LABEXT_MODULES)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	cd labextension && npm run lint:check

# The labextension's npm packages, as locked (the install builds with them; lint needs eslint).
$(LABEXT_MODULES): labextension/package-lock.json
	cd labextension && npm ci --no-audit --no-fund

$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

clean:
	rm -rf $(VENV) .floworch floworch_ext/labextension kernel/floworch/static labextension/lib labextension/node_modules

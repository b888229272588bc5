# deckhand — two commands on a fresh machine:
#   make run    set up a virtualenv with the pinned runtime deps and start the bot (on a fresh clone,
#               with no deckhand.yaml and no Slack credentials: the demo world, `python app.py demo`)
#   make test   set up the dev deps and system tools the tests use, then run the whole suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test bench check console tools

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

run: $(VENV)/.runtime
	$(BIN)/python app.py

check: $(VENV)/.runtime
	$(BIN)/python app.py check

console: $(VENV)/.runtime
	$(BIN)/python app.py console

# System tools the tests drive for real: Prometheus + promtool (Debian `prometheus`),
# shellcheck for the node join script, kubectl for the Kubernetes fake's compatibility test.
tools:
	@missing=""; \
	command -v promtool >/dev/null && command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v shellcheck >/dev/null || missing="$$missing shellcheck"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi; \
	command -v kubectl >/dev/null || { DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq kubectl \
	  || DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq kubernetes-client; }; \
	command -v promtool >/dev/null && command -v prometheus >/dev/null || { echo "prometheus/promtool missing after install" >&2; exit 1; }

test: $(VENV)/.dev tools
	DECKHAND_REQUIRE_TOOLS=1 $(BIN)/python -m pytest -q

bench: $(VENV)/.dev tools
	$(BIN)/python bench/run.py

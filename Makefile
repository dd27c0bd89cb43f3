# `make run SOURCE=path/to/fer2013.zip` sets up and runs the pipeline; `make test` sets up and tests.
VENV   ?= .venv
PYTHON ?= python3
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: setup run test clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	@git rev-parse --git-dir >/dev/null 2>&1 || git init --quiet
	@test -d .dvc || dvc init --quiet
	touch $@

# SOURCE (optional): a local fer2013.zip or extracted folder; default is params.yaml's download.source.
run: setup
ifdef SOURCE
	emotion params set download.source=$(abspath $(SOURCE))
endif
	dvc repro

test: setup
	pytest -q

clean:
	rm -rf $(VENV)

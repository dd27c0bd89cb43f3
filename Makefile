# `make run SOURCE=path/to/fer2013.zip` sets up and runs the pipeline; `make test` sets up and tests.
VENV   ?= .venv
PYTHON ?= python3
# Default DVC remote when the repo names none: a folder shared by every clone on this machine.
DVC_STORE ?= $(HOME)/.cache/emotion/dvc-store
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export DVC_NO_ANALYTICS := 1

.PHONY: setup run pull push test report results clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	@git rev-parse --git-dir >/dev/null 2>&1 || git init --quiet
	@test -d .dvc || dvc init --quiet
	@dvc remote default >/dev/null 2>&1 || { mkdir -p "$(DVC_STORE)" && \
		dvc remote add --local --default local "$(DVC_STORE)" && echo "DVC remote 'local' -> $(DVC_STORE)"; }
	touch $@

# SOURCE (optional): a local fer2013.zip or extracted folder; default is params.yaml's download.source.
run: setup
ifdef SOURCE
	emotion params set download.source=$(abspath $(SOURCE))
endif
	dvc repro

# Teammates: fetch the trained, exported model (and its metrics) without training.
pull: setup
	dvc pull export

push: setup
	dvc push

# Markdown review of the workspace against BASE (default main): `make report BASE=origin/main`.
report: setup
	emotion report --base $(or $(BASE),main) --print

# The README's results table: experiments on the last N commits from REV, with the params that differ
# (the README's: make results REV=d352219).
results: setup
	dvc exp show --md --only-changed --rev $(or $(REV),HEAD) -n $(or $(N),2) --drop \
	  '^(train\.(accuracy|loss)|(?!Experiment$$|test\.accuracy$$|test\.macro_f1$$|metrics/eval\.json:val\.accuracy$$|test\.per_class\.(disgust|fear)\.recall$$|train\.|evaluate\.).*)$$'

test: setup
	pytest -q

clean:
	rm -rf $(VENV)

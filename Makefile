# kubetune developer entry points. Every target installs what it needs itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: dev test test-unit test-integration test-e2e lint helm-lint chart-readme kind crds binaries system-deps venv cluster-up cluster-down clean

# kubetune with every role's extra and the test tools, and the reference trainer (its own
# distribution, trainer_image/), both editable: `python -m kubetune_trainer` is what the
# examples and the e2e tests run in trial pods.
$(STAMP): pyproject.toml trainer_image/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip uv
	$(VENV)/bin/uv pip install -q --python $(PY) -e '.[dev]' -e ./trainer_image
	touch $(STAMP)

# Python environment only.
venv: $(STAMP)

# The control plane's binaries, built from the Go module proxy and cached outside the checkout.
binaries:
	bash operator/kubetune/devcluster/build-binaries.sh

# System packages the local control plane needs (Prometheus from Debian).
system-deps:
	bash hack/install-system-deps.sh

# Run the example experiment end to end on a local control plane (no Docker needed).
dev: $(STAMP) system-deps binaries
	$(VENV)/bin/kubetune dev examples/mnist-asha.yaml

# The whole test suite: unit, integration and e2e tiers.
test: $(STAMP) system-deps binaries
	$(PY) -m pytest tests

test-unit: $(STAMP) binaries
	$(PY) -m pytest -m unit tests/unit

test-integration: $(STAMP) system-deps binaries
	$(PY) -m pytest -m integration tests

test-e2e: $(STAMP) system-deps binaries
	$(PY) -m pytest -m e2e tests

lint: $(STAMP) helm-lint
	$(VENV)/bin/ruff check operator tests benchmarks trainer_image
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

crds: $(STAMP)
	$(PY) -m kubetune.api.crdgen crds
	rm -f charts/kubetune/crds/*.yaml
	cp crds/*.yaml charts/kubetune/crds/

# Strict lint with the defaults and with each security option's other setting.
helm-lint: binaries
	H="$$(bash operator/kubetune/devcluster/build-binaries.sh)/helm"; set -e; \
	for v in "" "--set admissionPolicy.enabled=false --set userRoles.create=false" \
	    "--set admissionPolicy.validationActions={Warn,Audit} --set admissionPolicy.failurePolicy=Ignore" \
	    "--set networkPolicy.enabled=true --set networkPolicy.operatorEgress.restrict=true --set watchNamespaces={team-a}" \
	    "--set prometheus.bundled.podSecurityContext.runAsUser=null --set podSecurityContext.runAsUser=null"; do \
	  "$$H" lint --strict charts/kubetune $$v; done

# charts/kubetune/README.md from README.md.gotmpl and values.yaml's `# --` comments.
chart-readme:
	"$$(bash hack/helm-docs.sh)" --chart-search-root charts --chart-to-generate charts/kubetune

# With Docker: a kind cluster, the images, the chart and the example (see docs/install.md).
kind:
	bash hack/kind-up.sh

cluster-up: $(STAMP) system-deps binaries
	$(VENV)/bin/kubetune cluster up

cluster-down: $(STAMP)
	$(VENV)/bin/kubetune cluster down

clean:
	rm -rf $(VENV) build dist *.egg-info trainer_image/build trainer_image/*.egg-info

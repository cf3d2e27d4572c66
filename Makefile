# The two commands README.md promises: `make demo` and `make test`; docs/development.md has the rest.
SHELL := /bin/bash
VENV := .venv/bin
SOURCES := operator sandbox tests bench

.PHONY: setup demo test lint unit integration e2e crds bench clean image

setup:
	@bash hack/setup.sh

demo: setup
	$(VENV)/promotion-sandbox --repo=. demo

# what CI runs (.ci/run) and the pre-commit hooks run: lint, then every test tier
test: lint
	$(VENV)/python -m pytest

lint: setup
	$(VENV)/ruff check $(SOURCES)
	$(VENV)/ruff format --check $(SOURCES)
	$(VENV)/mypy
	$(VENV)/lint-imports
	$(VENV)/hadolint Dockerfile

# one test tier each: pure code; the real API server, registry and git; the operator process
unit: setup
	$(VENV)/python -m pytest tests/unit

integration: setup
	$(VENV)/python -m pytest tests/integration

e2e: setup
	$(VENV)/python -m pytest tests/e2e

crds: setup
	$(VENV)/promotion-operator crds crds charts/promotion-operator/crds

bench: setup
	$(VENV)/python bench/promotions.py

# The operator image. BASE_IMAGE=debian:bookworm-slim (or any Debian bookworm image) where a
# registry is reachable; otherwise the base is built here from the Debian mirror.
image:
	base="$(or $(BASE_IMAGE),$$(bash hack/build-base-image.sh))" && \
	docker build --build-arg BASE_IMAGE="$$base" -t $(or $(IMAGE),promotion-operator:dev) .

clean:
	rm -rf .venv .sandbox

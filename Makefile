# The two commands README.md promises: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv/bin
PKG := operator/promotion_operator operator/promotion_sandbox

.PHONY: setup demo test lint unit integration e2e crds bench clean image

setup:
	@bash hack/setup.sh

demo: setup
	$(VENV)/promotion-sandbox demo

lint: setup
	$(VENV)/ruff check operator tests bench
	$(VENV)/ruff format --check operator tests bench
	$(VENV)/mypy
	$(VENV)/lint-imports

test: lint
	$(VENV)/python -m pytest

unit: setup
	$(VENV)/python -m pytest tests/unit

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

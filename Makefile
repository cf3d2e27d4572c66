# The two commands README.md promises: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv/bin
PKG := operator/promotion_operator operator/promotion_sandbox

.PHONY: setup demo test lint unit integration e2e crds bench clean

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

clean:
	rm -rf .venv .sandbox

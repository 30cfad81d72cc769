.PHONY: demo test fast lint format bench docs

demo:      ## environment + tiny model + quickstart
	bash scripts/demo.sh

test:      ## install dev extras, run fast then slow tests
	bash scripts/test.sh

fast:      ## fast test tier only (existing environment)
	.venv/bin/python -m pytest -q -m "not slow"

lint:
	.venv/bin/ruff check src tests benchmarks
	.venv/bin/ruff format --check src tests benchmarks

format:
	.venv/bin/ruff format src tests benchmarks
	.venv/bin/ruff check --fix src tests benchmarks

docs:      ## regenerate the config reference from the field descriptions
	.venv/bin/tuneforge config docs > docs/config.md

bench:     ## print the CPU benchmark figures
	.venv/bin/python benchmarks/data_prep.py
	.venv/bin/python benchmarks/train_speed.py

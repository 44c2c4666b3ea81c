#!/usr/bin/env bash
# Set up, then run every test: the tool, every template variant (rendered through copier, each package's
# own tests, black and ruff), copier update behaviour, and the committed fleet in generated/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/black --check --quiet scaffold tests benchmarks
.venv/bin/ruff check --quiet scaffold tests benchmarks
.venv/bin/black --check --quiet generated   # the fleet's packages, each under its own pyproject's settings
.venv/bin/ruff check --quiet generated
.venv/bin/smt check    # the fleet in generated/ is at the template version and holds no unmerged state
exec .venv/bin/python -m pytest -n auto --dist loadgroup "$@"

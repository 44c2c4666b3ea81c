#!/usr/bin/env bash
# Set up, then run the whole loop once: render a fresh package from the template, train it on synthetic
# data for 3 epochs (seeded: the same metrics on every run), evaluate, export, print metrics and capacity.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/smt demo "$@"

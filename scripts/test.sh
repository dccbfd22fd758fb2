#!/usr/bin/env bash
# The test command: set up (incl. Chromium for the browser test), then unit tests + every notebook in
# smoke mode. Extra arguments go to pytest (e.g. `bash scripts/test.sh -k metrics`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
exec .venv/bin/python -m pytest -q --durations=25 "$@"

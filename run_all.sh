#!/usr/bin/env bash
# Regenerate every report on the default data: set up the environment, run the numbered notebooks (00-11) with
# papermill (executed copies in reports/notebooks/), train the default prediction model, run the
# benchmarks and refresh reports/SUMMARY.md. Stops at the first failing step and names it.
#
#   bash run_all.sh            # full run, writes reports/ and models/
#   bash run_all.sh --smoke    # small parameters, writes .cache/smoke_reports/ only
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
exec .venv/bin/python -m msa_lib.app.run_all "$@"

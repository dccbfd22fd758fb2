#!/usr/bin/env bash
# The notebooks are authored as jupytext percent scripts in notebooks/src/ (readable diffs) and paired
# with output-free .ipynb files in notebooks/ (what papermill runs). Rebuild the .ipynb after editing.
set -euo pipefail
cd "$(dirname "$0")/../notebooks"
for src in src/*.py; do
  name="$(basename "$src" .py)"
  # --update keeps the cell ids of an existing notebook, so a rebuild only changes the edited cells
  update=(); [ -f "$name.ipynb" ] && update=(--update)
  ../.venv/bin/jupytext --quiet "${update[@]}" --to ipynb --set-kernel python3 --update-metadata '{"jupytext":{"formats":"ipynb,src//py:percent"}}' -o "$name.ipynb" "$src"
done
echo "built $(ls src/*.py | wc -l) notebooks"

#!/usr/bin/env bash
# Create or update the project environment and check it. Safe to run any number of times: when
# nothing changed, a rerun only re-checks (seconds).
#
#   bash scripts/setup.sh            # .venv + ffmpeg + bundled models
#   bash scripts/setup.sh --test     # also Chromium (for the browser test of the attention explorer)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

WITH_BROWSER=0
for arg in "$@"; do
  case "$arg" in
    --test|--browser) WITH_BROWSER=1 ;;
    *) echo "setup: unknown option $arg (use --test)" >&2; exit 2 ;;
  esac
done

log() { echo "setup: $*"; }
die() { echo "setup: ERROR: $*" >&2; exit 1; }

apt_install() {
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo"; else return 1; fi
  fi
  command -v apt-get >/dev/null 2>&1 || return 1
  $sudo apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# --- system tools -----------------------------------------------------------------------------
PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null 2>&1 || die "python3 not found: install Python 3.11 (apt-get install python3 python3-venv)"
"$PY" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 12) else 1)' \
  || die "Python 3.10-3.12 is needed (torch 2.13 CPU wheel), found $("$PY" -V 2>&1)"

if ! command -v ffmpeg >/dev/null 2>&1 || ! command -v ffprobe >/dev/null 2>&1; then
  log "ffmpeg missing: installing it with apt"
  apt_install ffmpeg || die "ffmpeg is missing and could not be installed automatically (needs root or sudo and apt). Install it yourself (apt-get install ffmpeg, brew install ffmpeg) and rerun."
fi
if ! command -v espeak-ng >/dev/null 2>&1; then
  # tests only: speech in a third language (French) for the unsupported-language check of msa predict
  log "espeak-ng missing: installing it with apt (speech synthesis for the language tests)"
  apt_install espeak-ng || log "espeak-ng could not be installed (apt-get install espeak-ng); the third-language tests will be skipped"
fi
if [ "$WITH_BROWSER" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  log "chromium missing: installing it with apt (browser test only)"
  apt_install chromium || die "chromium is needed for the browser test and could not be installed (apt-get install chromium)."
fi

# --- python environment ------------------------------------------------------------------------
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$PY" -m venv .venv || die "could not create .venv (on Debian/Ubuntu: apt-get install python3-venv)"
fi
STAMP=.venv/.msa-setup-stamp
WANT="$(cat requirements.txt requirements-nodeps.txt constraints.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  log "installing packages (constraints.txt pins every version)"
  .venv/bin/python -m pip install -q --disable-pip-version-check "$(grep -E '^uv==' constraints.txt || echo uv)" \
    || die "could not install uv into .venv (is the package index reachable?)"
  # torch==2.13.0 must come from the local CPU wheel folder pip is configured with; uv needs it passed.
  FIND_LINKS="${PIP_FIND_LINKS:-$(.venv/bin/python -m pip config get global.find-links 2>/dev/null || true)}"
  UV=(.venv/bin/uv pip install --python .venv/bin/python -c constraints.txt)
  [ -n "$FIND_LINKS" ] && UV+=(--find-links "$FIND_LINKS")
  "${UV[@]}" -r requirements.txt || die "package installation failed (see above)"
  "${UV[@]}" --no-deps -r requirements-nodeps.txt || die "installing the --no-deps packages failed"
  "${UV[@]}" --no-deps -e . || die "editable install of msa_lib failed"
  # Byte-compile once: with PYTHONDONTWRITEBYTECODE set (as on these machines) every process would
  # otherwise recompile transformers & co. on import (13 s -> 5 s per notebook kernel).
  log "byte-compiling site-packages (once)"
  .venv/bin/python -m compileall -q -j 2 .venv/lib/python*/site-packages >/dev/null 2>&1 || true
  echo "$WANT" > "$STAMP"
else
  log "packages up to date"
fi

# --- checks: imports, ffmpeg, bundled models (rebuilt once into .cache/) ------------------------
.venv/bin/python -m msa_lib.app.doctor ${WITH_BROWSER:+$([ "$WITH_BROWSER" = 1 ] && echo --browser)} \
  || die "environment check failed (see above)"
log "ready (.venv)"

#!/usr/bin/env bash
# One entry point for people and CI. Each command sets up what it needs first:
# a local virtual environment (.venv) with torch 2.13.0 (CPU) and ecgcore built in place.
#   bash dev.sh demo     run the main job on simulated records
#   bash dev.sh test     run the test suite
#   bash dev.sh bench    run the benchmarks
set -euo pipefail
cd "$(dirname "$0")"
VENV="${ECGCORE_VENV:-.venv}"
PY="$VENV/bin/python"

setup() {
  if [ ! -x "$PY" ]; then
    python3 -m venv "$VENV"
  fi
  # Hash of everything that changes the build; reinstall only when it changed.
  local stamp="$VENV/.ecgcore-build"
  local want
  want="$( (find setup.py pyproject.toml csrc ecgcore -type f \( -name '*.cpp' -o -name '*.hpp' \
          -o -name '*.h' -o -name '*.pyx' -o -name '*.pxd' -o -name 'setup.py' -o -name 'pyproject.toml' \) \
          -print0 2>/dev/null || true) | sort -z | xargs -0 -r cat | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$PY" -m pip install -q --upgrade pip setuptools wheel
    # torch first, pinned to the CPU wheel; the package itself asks for a range.
    "$PY" -m pip install -q torch==2.13.0
    "$PY" -m pip install -q cython pybind11 numpy
    "$PY" -m pip install -q --no-build-isolation -e ".[models,dev,distributed,digitize,serve]"
    echo "$want" > "$stamp"
  fi
}

cmd="${1:-help}"; shift || true
case "$cmd" in
  demo)  setup; exec "$VENV/bin/ecgcore" demo "$@" ;;
  test)  setup; exec "$VENV/bin/pytest" -q "$@" ;;
  bench) setup; exec "$VENV/bin/pytest" -q benchmarks --benchmark-only "$@" ;;
  *) echo "usage: bash dev.sh demo|test|bench [args...]" >&2; exit 2 ;;
esac

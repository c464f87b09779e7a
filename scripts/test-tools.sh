#!/usr/bin/env bash
# Install the Python tools kept out of the project's virtualenv, whose pins would downgrade it (idempotent):
#   ogctests  the OGC API - Features verifier run by tests/test_serve_clients.py; it pins pyarrow<18, pytest<9 and
#             httpx<0.28 (poetry carets) but runs on this project's versions, so it goes into .geoservice/ogctests
#             without dependencies and is imported from there (PYTHONPATH);
#   tipg      bench/serve.py's comparison server (FastAPI pins), in a virtualenv of its own, .geoservice/bench-venv.
# Usage: scripts/test-tools.sh [ogctests] [tipg]   (both unless named; VENV is the project's virtualenv, default .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
python="${VENV:-.venv}/bin/python"
OGCTESTS_VERSION=0.1.15
for tool in ${*:-ogctests tipg}; do
  case "$tool" in
    ogctests)
      target=.geoservice/ogctests
      [ -d "$target/ogctests-$OGCTESTS_VERSION.dist-info" ] && continue
      echo "installing ogctests==$OGCTESTS_VERSION into $target (without its dependencies)"
      rm -rf "$target" "$target.partial"
      "$python" -m pip install --quiet --no-deps --target "$target.partial" "ogctests==$OGCTESTS_VERSION"
      mv "$target.partial" "$target" ;;
    tipg)
      venv=.geoservice/bench-venv
      [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import tipg, uvicorn' 2>/dev/null && continue
      echo "installing tipg into $venv"
      "$python" -m venv "$venv"
      "$venv/bin/python" -m pip install --quiet tipg uvicorn ;;
    *) echo "unknown tool $tool (ogctests, tipg)" >&2; exit 2 ;;
  esac
done

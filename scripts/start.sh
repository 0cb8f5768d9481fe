#!/usr/bin/env bash
# Install the lab into .venv (first run only) and start it on http://localhost:${PORT:-8501}.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
.venv/bin/pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
exec .venv/bin/streamlit run dashboard/app.py --server.port "${PORT:-8501}" "$@"

#!/usr/bin/env bash
# Install the lab and its test dependencies into .venv, then run every test.
# The browser test needs Debian's chromium; as root this script installs it with apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
.venv/bin/pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is missing: install Debian's chromium package for the browser test" >&2
  fi
fi
exec .venv/bin/python -m pytest "$@"

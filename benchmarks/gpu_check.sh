#!/usr/bin/env bash
# One device call: the kernels' GPU tests (v1 and v2 decode attention, quantize-pack), then the
# decode-attention benchmark (v1 and v2 side by side); logs and JSON under $OUT. ~4 min on an H200.
#   OUT=/some/dir bash benchmarks/gpu_check.sh [benchmark args; default: --rows targets]
# Env: TEST_TIMEOUT / BENCH_TIMEOUT (seconds), XDIST (pytest-xdist workers; 0 = none), SKIP_TESTS=1.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
export OUT
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
# kernels/ installs as `kivi_kernels`. On a bare machine (no `pip install -e .`) alias it through a
# symlink on PYTHONPATH rather than importing the folder as top-level `kernels`.
if ! (cd / && python3 -c "import kivi_core, kivi_kernels.decode_attention") 2>/dev/null; then
    shim=$(mktemp -d)
    ln -s "$PWD/kernels" "$shim/kivi_kernels"
    ln -s "$PWD/kivi_core" "$shim/kivi_core"
    export PYTHONPATH="$shim${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv >"$OUT/nvidia_smi.txt" 2>&1
rc=0
if [ "${SKIP_TESTS:-0}" != 1 ]; then
    xdist=()
    if [ "${XDIST:-8}" != 0 ] && python3 -c "import xdist" 2>/dev/null; then xdist=(-n "${XDIST:-8}"); fi
    timeout "${TEST_TIMEOUT:-120}" python3 -m pytest -m gpu tests/test_kernels_*.py -x -q -p no:cacheprovider \
        "${xdist[@]}" 2>&1 | tee "$OUT/gpu_tests.log"
    rc=${PIPESTATUS[0]}
    echo "gpu tests exit code: $rc"
fi
[ $# -eq 0 ] && set -- --rows targets
timeout "${BENCH_TIMEOUT:-130}" python3 benchmarks/bench_decode_attention.py "$@" 2>&1 | tee "$OUT/bench.log"
brc=${PIPESTATUS[0]}
echo "gpu tests exit code: $rc; benchmark exit code: $brc"
exit $(( rc != 0 ? rc : brc ))
